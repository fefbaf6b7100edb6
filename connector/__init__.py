"""MLflow -> data catalog (DataHub metadata model) ingestion connector."""
import os

# A metadata crawler must not phone home; MLflow 3 telemetry can also stall a
# process for minutes at exit on a machine without internet.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

__version__ = "0.1.0"
