"""MLflow 3 GenAI evaluation datasets, listed in bulk (`/api/3.0/mlflow/datasets/search`, paged):
each comes with its schema and profile, so no record of a dataset is ever read. Nothing on a
server without the API (MLflow 2.x, or a store that has no evaluation datasets)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Union

from connector.source.backend import Backend
from connector.source.crawl_records import CrawlObserver, parsed
from connector.source.errors import MlflowApiError
from connector.source.mlflow_objects import LoggedModel, ModelVersion, Run
from connector.source.fields import _int, _name_of, _object, _parsing, _text
from connector.source.paging import Listing, paged

EVALUATION_DATASETS_PAGE = 1000
# What MLflow 3 writes on the run mlflow.genai.evaluate makes, and on its dataset input
EVALUATION_RUN_TYPE = "genai_evaluate"
RUN_TYPE_TAG = "mlflow.runType"
EVALUATION_DATASET_SOURCE = "mlflow_evaluation_dataset"


def _json_text(value: Any, name: str) -> str:
    """MLflow answers tags, schema and profile as JSON text; the store backend as objects."""
    if value is None or isinstance(value, str):
        return value or ""
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True, slots=True)
class EvaluationDataset:
    dataset_id: str
    name: str
    digest: str = ""
    schema: str = ""    # JSON: {"inputs": {col: type}, "outputs": {...}, "expectations": {...}, "version"}
    profile: str = ""   # JSON: {"num_records": N}
    tags: dict[str, str] = field(default_factory=dict)
    created_time: Optional[int] = None
    last_update_time: Optional[int] = None
    created_by: str = ""
    last_updated_by: str = ""

    @classmethod
    def from_json(cls, d: dict) -> "EvaluationDataset":
        what = f"evaluation dataset {_name_of(d.get('dataset_id') if isinstance(d, dict) else None)}"
        return _parsing(what, cls._parse, d)

    @classmethod
    def _parse(cls, d: dict) -> "EvaluationDataset":
        d = _object(d, "dataset")
        tags_text = _json_text(d.get("tags"), "tags")
        try:
            tags = json.loads(tags_text) if tags_text else {}
        except ValueError:
            tags = {}
        return cls(
            dataset_id=_text(d["dataset_id"], "dataset_id"),
            name=_text(d.get("name", ""), "name"),
            digest=_text(d.get("digest", ""), "digest"),
            schema=_json_text(d.get("schema"), "schema"),
            profile=_json_text(d.get("profile"), "profile"),
            tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
            created_time=_int(d.get("created_time"), "created_time"),
            last_update_time=_int(d.get("last_update_time"), "last_update_time"),
            created_by=_text(d.get("created_by", ""), "created_by"),
            last_updated_by=_text(d.get("last_updated_by", ""), "last_updated_by"),
        )


def is_evaluation_run(tags: dict[str, str]) -> bool:
    return tags.get(RUN_TYPE_TAG) == EVALUATION_RUN_TYPE


def evaluation_dataset_id(source_type: str, source: str) -> Optional[str]:
    """The dataset id a run's input names when it is an evaluation dataset (source {"dataset_id": ...})."""
    if source_type != EVALUATION_DATASET_SOURCE:
        return None
    try:
        fields = json.loads(source) if source else None
    except ValueError:
        return None
    dataset_id = fields.get("dataset_id") if isinstance(fields, dict) else None
    return str(dataset_id) if dataset_id else None


EvaluatedModel = Union[ModelVersion, LoggedModel]


def models_by_evaluation_run(versions: Iterable[tuple[Any, ModelVersion]], logged: Iterable[LoggedModel]
                             ) -> dict[str, tuple[EvaluatedModel, ...]]:
    """Evaluation run id -> the models it evaluated, as the catalog holds them (the versions
    registering the LoggedModel, else the LoggedModel itself). MLflow's run search leaves out a
    run's model inputs; the LoggedModel's metrics name the run that measured them."""
    registering: dict[str, list[ModelVersion]] = {}
    for _, version in versions:
        if version.model_id:
            registering.setdefault(version.model_id, []).append(version)
    index: dict[str, list[EvaluatedModel]] = {}
    for lm in logged:
        runs = {m.run_id for m in lm.metrics if m.dataset_name and m.run_id and m.run_id != lm.source_run_id}
        for run_id in sorted(runs):
            index.setdefault(run_id, []).extend(registering.get(lm.model_id) or [lm])
    return {k: tuple(v) for k, v in index.items()}


def evaluated_models(run: Run, index: dict[str, tuple[EvaluatedModel, ...]]) -> tuple[EvaluatedModel, ...]:
    return index.get(run.run_id, ()) if is_evaluation_run(run.tags) else ()


class EvaluationDatasetReader:
    def __init__(self, backend: Backend, observer: CrawlObserver):
        self.backend = backend
        self.observer = observer
        self.refused = False  # the server has no datasets API (or answered as if): none known, none gone

    def list(self) -> Iterator[EvaluationDataset]:
        listing = Listing("datasets/search",
                          lambda token: self.backend.search_evaluation_datasets(EVALUATION_DATASETS_PAGE, token))
        try:
            yield from parsed(paged(listing), EvaluationDataset.from_json, self.observer)
        except MlflowApiError as exc:
            if not exc.endpoint_missing:
                raise
            self.refused = True
            self.observer.info("No evaluation datasets", "this MLflow server has no GenAI evaluation dataset "
                                                         "API (MLflow 2.x): none were read")
