"""Read a model's MLmodel file (for its signature) wherever MLflow keeps the artifacts."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

import yaml

_LOCAL_SCHEMES = ("", "file")


def mlmodel_location(source: str, run_artifact_uri: Optional[str]) -> Optional[str]:
    """Where a version's model lives: runs:/<id>/<path> resolves against the run's artifacts."""
    if source.startswith("runs:/"):
        if not run_artifact_uri:
            return None
        path = source[len("runs:/"):].split("/", 1)
        return f"{run_artifact_uri.rstrip('/')}/{path[1]}" if len(path) > 1 else run_artifact_uri
    if source.startswith("models:/"):
        return None  # a registry or LoggedModel reference: resolved through the LoggedModel
    return source or None


def read_mlmodel(uri: str, backend) -> dict:
    """The parsed MLmodel under `uri` (a local path, file:, mlflow-artifacts: or any store MLflow
    knows, with that store's own credentials)."""
    parts = urlsplit(uri)
    if parts.scheme in _LOCAL_SCHEMES or (len(parts.scheme) == 1 and uri[1] == ":"):
        text = (Path(unquote(parts.path) if parts.scheme == "file" else uri) / "MLmodel").read_bytes()
    elif parts.scheme == "mlflow-artifacts":
        text = backend.read_artifact(f"{parts.path.rstrip('/')}/MLmodel")
    else:
        from connector.source.store_backend import quiet_mlflow_telemetry

        quiet_mlflow_telemetry()
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory() as tmp:
            local = get_artifact_repository(uri).download_artifacts("MLmodel", tmp)
            text = Path(local).read_bytes()
    data = yaml.safe_load(text)
    return data if isinstance(data, dict) else {}


def signature_inputs(mlmodel: dict) -> Optional[list]:
    """The signature's named input columns ([{name, type, required}]), or None (no signature, a
    tensor signature, none named). An unnamed or malformed column is left out, not the others."""
    signature = mlmodel.get("signature")
    inputs = signature.get("inputs") if isinstance(signature, dict) else None
    try:
        columns = json.loads(inputs) if isinstance(inputs, str) else inputs
    except ValueError:
        return None
    if not isinstance(columns, list):
        return None
    named = [c for c in columns if isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"].strip()]
    return named or None
