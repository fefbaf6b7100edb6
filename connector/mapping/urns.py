"""Every URN the connector (and its SDK) builds. One builder per entity type.

For plain names these equal the URNs of DataHub's own MLflow source, so a
catalog fed by both has no duplicates.
"""
from __future__ import annotations

import hashlib
import json
from typing import Optional

PLATFORM = "mlflow"
_RESERVED = {",": "%2C", "(": "%28", ")": "%29", "\u241f": "%E2%90%9F"}


def encode(name: str) -> str:
    """Percent-encode the characters that would break a URN tuple."""
    if not any(c in name for c in _RESERVED):
        return name
    return "".join(_RESERVED.get(c, c) for c in name)


def guid(fields: dict) -> str:
    return hashlib.md5(
        json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")
    ).hexdigest()


def platform_urn(platform: str = PLATFORM) -> str:
    return platform if platform.startswith("urn:li:dataPlatform:") else f"urn:li:dataPlatform:{platform}"


def platform_instance_urn(instance: str, platform: str = PLATFORM) -> str:
    return f"urn:li:dataPlatformInstance:({platform_urn(platform)},{encode(instance)})"


def model_group_urn(name: str, env: str, platform: str = PLATFORM) -> str:
    return f"urn:li:mlModelGroup:({platform_urn(platform)},{encode(name)},{env})"


def model_urn(name: str, version: str, separator: str, env: str, platform: str = PLATFORM) -> str:
    return f"urn:li:mlModel:({platform_urn(platform)},{encode(f'{name}{separator}{version}')},{env})"


def plain_model_urn(name: str, env: str, platform: str = PLATFORM) -> str:
    """A model that is not a registry version (built by hand through the SDK)."""
    return f"urn:li:mlModel:({platform_urn(platform)},{encode(name)},{env})"


def version_set_urn(model_name: str, platform: str = PLATFORM) -> str:
    return f"urn:li:versionSet:({guid({'platform': platform, 'name': model_name})},mlModel)"


def experiment_urn(name: str, instance: Optional[str] = None, platform: str = PLATFORM) -> str:
    key = {"platform": platform_urn(platform), "id": name}
    if instance:
        key["instance"] = instance
    return f"urn:li:container:{guid(key)}"


def run_urn(run_id: str, orchestrator: str = PLATFORM) -> str:
    return f"urn:li:dataProcessInstance:{guid({'orchestrator': orchestrator, 'id': run_id})}"


def dataset_urn(platform: str, name: str, env: str) -> str:
    return f"urn:li:dataset:({platform_urn(platform)},{encode(name)},{env})"


def tag_urn(name: str) -> str:
    return f"urn:li:tag:{name}"


def stage_tag_name(stage: str) -> str:
    return f"{PLATFORM}_{stage.lower()}"


def corpuser_urn(user: str) -> str:
    return user if user.startswith("urn:li:corpuser:") else f"urn:li:corpuser:{user}"


def deployment_urn(platform: str, name: str, env: str) -> str:
    return f"urn:li:mlModelDeployment:({platform_urn(platform)},{encode(name)},{env})"


def feature_urn(namespace: str, name: str) -> str:
    return f"urn:li:mlFeature:({encode(namespace)},{encode(name)})"


def entity_type(urn: str) -> str:
    """`urn:li:mlModel:(...)` -> `mlModel`."""
    return urn.split(":", 3)[2]


def checkpoint_job_urn(pipeline_name: str, job_name: str) -> str:
    """The dataJob DataHub keeps a pipeline's ingestion checkpoints on (`make_data_job_urn("datahub", ...)`)."""
    return f"urn:li:dataJob:(urn:li:dataFlow:(datahub,{encode(pipeline_name)},prod),{encode(job_name)})"
