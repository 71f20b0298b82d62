"""Train the example model as Azure's tutorial does: Ridge on the diabetes data set.

Run with the scikit-learn version pinned in requirements.txt, so the image loads
the pickle with the version that wrote it:  python train.py
"""

import os

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

features, target = load_diabetes(return_X_y=True)
model = Ridge(alpha=0.1).fit(features, target)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "sklearn_regression_model.pkl")
joblib.dump(model, path)
print(f"wrote {path}")
