"""The smallest MLflow pyfunc model, for seeding logged models (its own module: importing
mlflow.pyfunc takes seconds, so only the seeding that logs one imports it)."""
import mlflow.pyfunc


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input
