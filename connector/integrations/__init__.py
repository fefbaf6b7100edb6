"""Running the connector inside other tools (Airflow)."""
