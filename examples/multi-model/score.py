# An Azure ML entry script for two models: each is found at
# $AZUREML_MODEL_DIR/<model name>/<version>/<original file or folder name>.
import json
import os

import joblib
import numpy as np


def init():
    global ridge, lasso, lasso_alpha
    model_dir = os.getenv("AZUREML_MODEL_DIR")
    ridge = joblib.load(os.path.join(model_dir, "diabetes_ridge", "1", "ridge.pkl"))
    lasso_folder = os.path.join(model_dir, "diabetes_lasso", "2", "lasso")
    lasso = joblib.load(os.path.join(lasso_folder, "lasso.pkl"))
    with open(os.path.join(lasso_folder, "metadata.json")) as handle:
        lasso_alpha = json.load(handle)["alpha"]


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return {
        "ridge": ridge.predict(data).tolist(),
        "lasso": lasso.predict(data).tolist(),
        "lasso_alpha": lasso_alpha,
    }
