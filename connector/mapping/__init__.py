"""Pure functions from MLflow records to metadata change proposals. No I/O here."""
