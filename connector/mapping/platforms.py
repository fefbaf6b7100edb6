"""Catalog platforms of the places MLflow datasets come from."""

# MLflow dataset source types that are not spelt as the catalog's platform
SOURCE_TYPE_PLATFORMS = {"gs": "gcs", "abfss": "abs", "wasbs": "abs", "delta_table": "delta-lake",
                         "hugging_face": "huggingface"}

# DataHub's platform ids: a source type spelt as one of them is that platform, no mapping needed.
# (A superset of acryl-datahub's KNOWN_VALID_PLATFORM_NAMES, which its own MLflow source uses;
# a test checks that it stays one.)
DATAHUB_PLATFORMS = frozenset({
    "abs", "adls", "athena", "azure-data-lake", "bigquery", "cassandra", "clickhouse", "cockroachdb",
    "couchbase", "databricks", "db2", "dbt", "delta-lake", "doris", "dremio", "druid", "dynamodb",
    "elasticsearch", "feast", "file", "gcs", "glue", "hana", "hdfs", "hive", "hudi", "huggingface",
    "iceberg", "kafka", "kusto", "mariadb", "mongodb", "mssql", "mysql", "neo4j", "opensearch",
    "oracle", "pinot", "postgres", "presto", "redshift", "s3", "sagemaker", "salesforce", "snowflake",
    "spark", "sqlite", "starburst", "streamlit", "synapse", "teradata", "trino", "unity-catalog",
    "vertica", "vertexai",
})
