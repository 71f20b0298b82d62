"""Train the two example models (run with scikit-learn 1.5.2, as pinned in package.yaml)."""

import json
import os

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso, Ridge

here = os.path.dirname(os.path.abspath(__file__))
features, target = load_diabetes(return_X_y=True)
joblib.dump(Ridge(alpha=0.1).fit(features, target), os.path.join(here, "models", "ridge.pkl"))
joblib.dump(Lasso(alpha=0.05).fit(features, target), os.path.join(here, "models", "lasso", "lasso.pkl"))
with open(os.path.join(here, "models", "lasso", "metadata.json"), "w") as handle:
    json.dump({"alpha": 0.05, "features": 10}, handle)
print("wrote models/ridge.pkl and models/lasso/")
