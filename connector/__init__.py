"""MLflow -> data catalog (DataHub metadata model) ingestion connector.

Importing it changes nothing in the host process (no environment variable is set): the CLI turns
MLflow's telemetry off for its own process, and an in-process MLflow client is only loaded by
connector.source.store_backend, which does the same just before (see quiet_mlflow_telemetry)."""

__version__ = "0.1.0"
