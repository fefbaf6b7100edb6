"""Optional integrations with other tools. Nothing here is imported by the core package:
each module may need an extra (`datahub_source`: `mlflow-catalog-connector[datahub]`)."""
