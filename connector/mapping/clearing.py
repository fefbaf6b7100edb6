"""The cleared value of each aspect a model or group has only while MLflow holds data for it:
sent when such an aspect was sent before and is not now, or the catalog would keep it forever."""
from __future__ import annotations

from connector.mapping.common import Mcp

CLEARED_ASPECTS: dict[str, dict] = {
    "deprecation": {"deprecated": False, "note": "", "actor": "urn:li:corpuser:mlflow"},
    # (an empty {} aspect cannot be read back from a file by DataHub's tools: name the empty fields)
    "intendedUse": {"primaryUses": [], "primaryUsers": [], "outOfScopeUses": []},
    "mlModelEthicalConsiderations": {"data": [], "humanLife": [], "mitigations": [], "risksAndHarms": [],
                                     "useCases": []},
    "mlModelCaveatsAndRecommendations": {"idealDatasetCharacteristics": []},
    "mlModelFactorPrompts": {"relevantFactors": [], "evaluationFactors": []},
    "mlModelTrainingData": {"trainingData": []},
    "mlModelEvaluationData": {"evaluationData": []},
}
# the aspect every emission of a model or group has: its presence means "this entity was re-sent"
OWNER_ASPECTS = ("mlModelProperties", "mlModelGroupProperties")


def cleared(urn: str, aspect_name: str) -> Mcp:
    return Mcp(urn, aspect_name, dict(CLEARED_ASPECTS[aspect_name]))
