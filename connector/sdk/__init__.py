"""Create and link ML entities MLflow does not hold (runs outside MLflow, datasets, deployments)."""
from connector.sdk.client import CatalogClient
from connector.sdk.models import (
    DeploymentProperties, DeploymentStatus, ExperimentProperties, ModelGroupProperties, ModelProperties,
    RunProperties, RunResult, TimeStamp, TrainingRunProperties,
)

__all__ = [
    "CatalogClient", "DeploymentProperties", "DeploymentStatus", "ExperimentProperties",
    "ModelGroupProperties", "ModelProperties", "RunProperties", "RunResult", "TimeStamp",
    "TrainingRunProperties",
]
