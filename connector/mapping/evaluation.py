"""MLflow 3 GenAI evaluation -> the catalog.

- An evaluation dataset (`mlflow.genai.datasets`) is a dataset on the mlflow platform, with its
  schema (inputs, outputs and expectations, as MLflow profiles them) and record count. Its URN is
  the one a run's input of it gets (NAME@ID, ID from the dataset's id; NAME alone with
  `dataset_urn: name`), so the evaluation runs that read it link to it through their inputs.
- A run of `mlflow.genai.evaluate` (tag mlflow.runType = genai_evaluate) is an "Evaluation Run"
  with its scorers listed (its metrics are SCORER/AGGREGATE).
- A model an evaluation measured (its LoggedModel's metrics name the dataset and the run) points at
  the evaluation datasets (`mlModelEvaluationData`) and at its evaluation runs (`downstreamJobs`).
"""
from __future__ import annotations

import json
from typing import Iterable, Iterator, Optional

from connector.mapping import urns
from connector.mapping.common import (
    MappingContext, Mcp, drop_none, known_user, logged_model_urn, mcp, platform_instance_aspect, run_urn,
    sorted_props, status, time_stamp, version_urn,
)
from connector.source.evaluation import EVALUATION_DATASET_SOURCE, EvaluationDataset, is_evaluation_run
from connector.source.mlflow_objects import LoggedModel, ModelVersion, Run

SOURCE_ID_LENGTH = 12  # as mapping.datasets: hex digits of the source's GUID in a dataset URN
EVALUATION_DATASET_SUBTYPE = "Evaluation Dataset"
EVALUATION_RUN_SUBTYPE = "Evaluation Run"
# MLflow's profile of a record value -> the catalog's schema field type
_FIELD_TYPES = {"boolean": "BooleanType", "integer": "NumberType", "float": "NumberType", "string": "StringType",
                "array": "ArrayType", "object": "RecordType", "null": "NullType"}
_SCHEMA_SECTIONS = ("inputs", "outputs", "expectations")


def evaluation_source_key(dataset_id: str) -> dict:
    """What identifies an evaluation dataset beside its name: its id (its digest changes with
    every record merged, and a run's input of it carries another digest than the dataset)."""
    return {"source_type": EVALUATION_DATASET_SOURCE, "dataset_id": dataset_id}


def evaluation_dataset_urn(ctx: MappingContext, name: str, dataset_id: str) -> str:
    if ctx.dataset_urn == "name":
        return urns.dataset_urn(urns.PLATFORM, name, ctx.env, instance=ctx.platform_instance)
    source_id = urns.guid(evaluation_source_key(dataset_id))[:SOURCE_ID_LENGTH]
    return urns.dataset_urn(urns.PLATFORM, f"{name}@{source_id}", ctx.env, instance=ctx.platform_instance)


def _json(text: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def schema_fields(schema: str) -> list[dict]:
    """`{"inputs": {"question": "string"}, "expectations": {...}}` -> fields inputs.question, ..."""
    parsed = _json(schema)
    fields = []
    for section in _SCHEMA_SECTIONS:
        columns = parsed.get(section)
        if not isinstance(columns, dict):
            continue
        for column, native in sorted(columns.items()):
            native = native if isinstance(native, str) else json.dumps(native, sort_keys=True)
            fields.append({
                "fieldPath": f"{section}.{column}",
                "nullable": True,
                "type": {"type": {f"com.linkedin.schema.{_FIELD_TYPES.get(native, 'StringType')}": {}}},
                "nativeDataType": native,
            })
    return fields


def map_evaluation_dataset(ctx: MappingContext, dataset: EvaluationDataset) -> Iterator[Mcp]:
    urn = evaluation_dataset_urn(ctx, dataset.name, dataset.dataset_id)
    user_tags = {k: v for k, v in dataset.tags.items() if not k.startswith("mlflow.")}
    records = _json(dataset.profile).get("num_records")
    custom = {"dataset_id": dataset.dataset_id, "digest": dataset.digest, "source_type": EVALUATION_DATASET_SOURCE,
              "num_records": records, "created_by": known_user(dataset.created_by),
              "last_updated_by": known_user(dataset.last_updated_by)}
    yield mcp(urn, "datasetProperties", drop_none({
        "name": dataset.name,
        "customProperties": sorted_props({k: v for k, v in custom.items() if v not in (None, "")}),
        "created": time_stamp(dataset.created_time, known_user(dataset.created_by)),
        "lastModified": time_stamp(dataset.last_update_time, known_user(dataset.last_updated_by)),
        "tags": [f"{k}:{v}" if v else k for k, v in sorted(user_tags.items())],
    }))
    yield mcp(urn, "subTypes", {"typeNames": [EVALUATION_DATASET_SUBTYPE]})
    fields = schema_fields(dataset.schema)
    if fields:
        yield mcp(urn, "schemaMetadata", {
            "schemaName": dataset.name,
            "platform": urns.platform_urn(),
            "version": 0,
            "created": {"time": int(dataset.created_time or 0), "actor": "urn:li:corpuser:unknown"},
            "lastModified": {"time": int(dataset.last_update_time or 0), "actor": "urn:li:corpuser:unknown"},
            "hash": dataset.digest,
            "platformSchema": {"com.linkedin.schema.OtherSchema": {"rawSchema": dataset.schema}},
            "fields": fields,
        })
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    yield mcp(urn, "status", status())


# -- evaluation runs -------------------------------------------------------------------------
def scorers(run: Run) -> list[str]:
    """The scorers of an evaluation run: its metrics are SCORER/AGGREGATE (exact_match/mean)."""
    return sorted({key.split("/", 1)[0] for key in run.metrics if "/" in key})


def evaluation_run_properties(run: Run) -> dict[str, str]:
    """Built-in custom properties of an evaluation run ({} for any other run)."""
    if not is_evaluation_run(run.tags):
        return {}
    return {"evaluation_scorers": ", ".join(scorers(run))}


def run_subtype(run: Run, default: str) -> str:
    return EVALUATION_RUN_SUBTYPE if is_evaluation_run(run.tags) else default


def evaluated_model_key(model) -> tuple:
    if isinstance(model, ModelVersion):
        return ("version", model.name, model.version)
    return ("logged_model", model.name, model.model_id)


def evaluated_model_urn(ctx: MappingContext, model) -> str:
    if isinstance(model, ModelVersion):
        return version_urn(ctx, model.name, model.version)
    return logged_model_urn(ctx, model.name, model.model_id)


def with_evaluated_models(ctx: MappingContext, proposals: Iterable[Mcp], evaluated: Iterable) -> list[Mcp]:
    """An evaluation run's proposals with the models it evaluated among its inputs (DataHub's
    dataProcessInstanceInput takes mlModel URNs): the model is upstream of its evaluation."""
    proposals = list(proposals)
    models = list(dict.fromkeys(evaluated_model_urn(ctx, m) for m in evaluated))
    if not models or not proposals:
        return proposals
    urn = proposals[0].entity_urn
    out, placed = [], False
    for p in proposals:
        if p.aspect_name == "dataProcessInstanceInput":
            inputs = _merged(p.aspect.get("inputs", []), models)
            p, placed = mcp(urn, p.aspect_name, {"inputs": inputs,
                                                 "inputEdges": [{"destinationUrn": u} for u in inputs]}), True
        elif p.aspect_name == "dataPlatformInstance" and not placed:
            out.append(mcp(urn, "dataProcessInstanceInput", {
                "inputs": models, "inputEdges": [{"destinationUrn": u} for u in models]}))
            placed = True
        out.append(p)
    return out


# -- models an evaluation measured ---------------------------------------------------------------
def evaluations_of(logged: Optional[LoggedModel], datasets_by_name: dict[str, set[str]]) -> tuple[list, list]:
    """(evaluation dataset URNs, evaluation run ids) of a LoggedModel: its metrics measured on a
    dataset that is an evaluation dataset (one name, one evaluation dataset: a name several share
    is left out, it cannot tell which)."""
    dataset_urns, run_ids = [], []
    for metric in logged.metrics if logged else ():
        candidates = datasets_by_name.get(metric.dataset_name) if metric.dataset_name else None
        if not candidates or len(candidates) != 1:
            continue
        dataset_urns.append(next(iter(candidates)))
        if metric.run_id:
            run_ids.append(metric.run_id)
    return sorted(set(dataset_urns)), sorted(set(run_ids))


def _merged(existing: Iterable, added: Iterable) -> list:
    return list(dict.fromkeys([*existing, *added]))


def with_evaluations(ctx: MappingContext, proposals: Iterable[Mcp], logged: Optional[LoggedModel],
                     datasets_by_name: dict[str, set[str]]) -> list[Mcp]:
    """A model's proposals with its evaluation datasets and runs added (unchanged without any)."""
    proposals = list(proposals)
    dataset_urns, run_ids = evaluations_of(logged, datasets_by_name)
    if not dataset_urns or not proposals:
        return proposals
    urn = proposals[0].entity_urn
    out: list[Mcp] = []
    has_evaluation_data = False
    for p in proposals:
        if p.aspect_name == "mlModelProperties" and run_ids:
            # sorted by URN: run ids and their URNs (hashes) sort differently
            jobs = _merged(p.aspect.get("downstreamJobs", []), sorted(run_urn(ctx, r) for r in run_ids))
            p = mcp(urn, p.aspect_name, {**p.aspect, "downstreamJobs": jobs})
        elif p.aspect_name == "mlModelEvaluationData":
            has_evaluation_data = True
            known = [d["dataset"] for d in p.aspect.get("evaluationData", [])]
            p = mcp(urn, p.aspect_name, {"evaluationData": [{"dataset": d} for d in _merged(known, dataset_urns)]})
        elif p.aspect_name == "status" and not has_evaluation_data:
            out.append(mcp(urn, "mlModelEvaluationData", {"evaluationData": [{"dataset": d} for d in dataset_urns]}))
            has_evaluation_data = True
        out.append(p)
    return out
