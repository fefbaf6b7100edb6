"""Running the connector inside other tools: Airflow (`airflow`, extra `[airflow]`) and DataHub's
own ingestion framework (`datahub_source`, extra `[datahub]`). Nothing here is imported by the
core package."""
