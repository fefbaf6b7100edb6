"""What the seeded store (tests/seeding.py) must become, by SPEC's formulas written
independently of the connector's own URN builders."""
import hashlib
import json

from tests.seeding import ODD_EXPERIMENT


def _guid(d):  # SPEC's formula, written independently of the connector
    return hashlib.md5(json.dumps(d, separators=(",", ":"), sort_keys=True).encode()).hexdigest()


def run_urn(run_id):
    return f"urn:li:dataProcessInstance:{_guid({'orchestrator': 'mlflow', 'id': run_id})}"


def exp_urn(name):
    return f"urn:li:container:{_guid({'platform': 'urn:li:dataPlatform:mlflow', 'id': name})}"


def model_urn(name, version):
    return f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,{name}_{version},PROD)"


def group_urn(name):
    return f"urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,{name},PROD)"


def dataset_urn(name, source_type, location):
    """A logged dataset: NAME@ first 12 hex digits of GUID({source_type, location})."""
    source_id = _guid({"source_type": source_type, "location": location})[:12]
    return f"urn:li:dataset:(urn:li:dataPlatform:mlflow,{name}@{source_id},PROD)"


CHURN_TRAIN = dataset_urn("churn_train", "s3", "s3://ml-data/churn/train.parquet")
CHURN_EVAL = dataset_urn("churn_eval", "gs", "gs://ml-data/churn/eval.parquet")
ODD_ENC = "fraud%2Cv2 %28beta%29"


def expected_urns(seeded) -> set:
    r = seeded.runs
    return {
        exp_urn("churn-training"), exp_urn(ODD_EXPERIMENT), exp_urn("Default"),
        *(run_urn(r[k]) for k in ("baseline", "tuned", "running", "killed", "odd", "default")),
        group_urn("churn_model"), group_urn(ODD_ENC),
        model_urn("churn_model", 1), model_urn("churn_model", 2), model_urn("churn_model", 3),
        model_urn(ODD_ENC, 1), model_urn(ODD_ENC, 2),
        CHURN_TRAIN, CHURN_EVAL,
        *(f"urn:li:tag:mlflow_{s}" for s in ("production", "staging", "archived", "none")),
    }
