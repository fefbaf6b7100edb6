"""Populate an MLflow 3 server through MLflow's own GenAI APIs: prompts with versions and aliases,
an agent LoggedModel (model_type "agent") that links a prompt version, reads a dataset and is
registered, and a plain registered model beside them."""
from __future__ import annotations

import warnings

SUPPORT_TEMPLATE = "You answer {{question}} for {{customer}}. Be brief."


def seed_genai(url: str) -> dict:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    mlflow.genai.register_prompt("support-answer", template="Answer {{question}}.",
                                 commit_message="first draft", tags={"team": "support"})
    mlflow.genai.register_prompt("support-answer", template=SUPPORT_TEMPLATE, commit_message="names the customer",
                                 response_format={"type": "object"}, model_config={"temperature": 0.1})
    mlflow.genai.set_prompt_alias("support-answer", alias="production", version=2)
    mlflow.genai.register_prompt("triage", template=[{"role": "system", "content": "Sort {{ticket}}."},
                                                     {"role": "user", "content": "{{ticket}}"}])
    client.create_registered_model("ranker", description="a plain model")
    exp = client.create_experiment("support-bot")
    tickets = mlflow.data.from_pandas(pd.DataFrame({"ticket": ["a", "b"]}), source="s3://support/tickets.parquet",
                                      name="tickets")
    with mlflow.start_run(experiment_id=exp, run_name="agent-build") as run:
        mlflow.log_input(tickets, context="training")
        mlflow.set_tag("mlflow.note.content", "Answers support tickets")
        mlflow.genai.load_prompt("prompts:/support-answer/1")  # links the version to the active run
        agent = mlflow.initialize_logged_model(name="support-agent", model_type="agent", source_run_id=run.info.run_id,
                                               experiment_id=exp)
    client.link_prompt_version_to_model("support-answer", "2", agent.model_id)
    mlflow.finalize_logged_model(agent.model_id, "READY")
    mlflow.register_model(f"models:/{agent.model_id}", "support-agent")
    draft = mlflow.create_external_model(name="draft-agent", model_type="agent", experiment_id=exp)
    client.link_prompt_version_to_model("triage", "1", draft.model_id)
    return {"experiment_id": exp, "run_id": run.info.run_id, "agent_id": agent.model_id, "draft_id": draft.model_id}
