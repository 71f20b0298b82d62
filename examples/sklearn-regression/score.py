# An Azure ML entry script, unchanged: init() loads the model once, run() scores a request.
import json
import os

import joblib
import numpy as np


def init():
    global model
    # AZUREML_MODEL_DIR is the registered model's folder (./azureml-models/$MODEL_NAME/$VERSION).
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl")
    model = joblib.load(model_path)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    # Anything JSON-serialisable can be returned.
    return result.tolist()
