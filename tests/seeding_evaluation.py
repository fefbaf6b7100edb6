"""Seed a real MLflow 3 server through MLflow's own GenAI APIs (no LLM, no network): an evaluation
dataset (create_dataset + merge_records), a registered version of a LoggedModel and an agent
LoggedModel no version registers, each evaluated with mlflow.genai.evaluate, a local predict_fn
and custom @scorer functions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

QUESTIONS = [
    {"inputs": {"question": "What is MLflow?"}, "expectations": {"expected_response": "A platform"}},
    {"inputs": {"question": "What is DataHub?"}, "expectations": {"expected_response": "A catalog"}},
]


@dataclass
class EvaluationFacts:
    url: str
    experiment_id: str
    dataset_id: str
    registered_model_id: str       # the LoggedModel version 1 of qa_bot registers
    agent_model_id: str            # a LoggedModel no version registers
    bot_run_id: str                # the evaluation run of qa_bot v1
    agent_run_id: str              # the evaluation run of the agent
    db: Optional[Path] = None      # the server's sqlite store, for reading it in-process


def _answer(question: str) -> str:
    return "A platform" if "MLflow" in question else "no idea"


def _scorers():
    from mlflow.genai.scorers import scorer

    @scorer
    def exact_match(outputs, expectations) -> bool:
        return outputs == expectations["expected_response"]

    @scorer
    def short_answer(outputs) -> bool:
        return len(outputs) < 100

    return [exact_match, short_answer]


def evaluate(model_id: str, dataset) -> str:
    """One mlflow.genai.evaluate of the model on the dataset; its run id."""
    import mlflow

    def predict_fn(question: str) -> str:
        return _answer(question)

    return mlflow.genai.evaluate(data=dataset, predict_fn=predict_fn, scorers=_scorers(), model_id=model_id).run_id


def seed_evaluation(url: str) -> EvaluationFacts:
    import mlflow
    from mlflow.genai.datasets import create_dataset

    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    experiment = mlflow.set_experiment("genai-eval")
    dataset = create_dataset(name="qa_eval", experiment_id=[experiment.experiment_id], tags={"team": "assistants"})
    dataset.merge_records(QUESTIONS)
    bot = mlflow.create_external_model(name="qa_bot", model_type="agent")
    mlflow.register_model(f"models:/{bot.model_id}", "qa_bot")
    agent = mlflow.create_external_model(name="support_agent", model_type="agent")
    bot_run = evaluate(bot.model_id, dataset)
    agent_run = evaluate(agent.model_id, dataset)
    return EvaluationFacts(url, experiment.experiment_id, dataset.dataset_id, bot.model_id, agent.model_id,
                           bot_run, agent_run)
