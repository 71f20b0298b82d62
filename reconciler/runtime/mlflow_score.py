"""The entry script of an MLflow model served with no code (Azure's no-code deployment).

reconciler copies this file into the image as the whole app when a package's model is of
`type: mlflow_model` and the package has no entry script; RECONCILER_MLFLOW_MODEL says
where the model folder is. It is an ordinary entry script to the runtime (init(), run()).

Requests are answered as Azure's server answers them for MLflow models:

- Azure's `{"input_data": ...}`: a pandas DataFrame in split orient (`columns`, `data`,
  `index`), a list of rows (named by the signature's columns), or a dict of named inputs
  (arrays for a tensor signature, columns otherwise); `params` beside it. The answer is the
  predictions as JSON (a DataFrame as records).
- MLflow's own `dataframe_split`, `dataframe_records`, `instances` or `inputs` (and
  `params`): answered `{"predictions": ...}`, as MLflow's scoring server does.

The model's signature is enforced by MLflow's loader: an input it refuses gets a 400 with
MLflow's own message, which names the missing or mistyped column. /swagger.json describes
the signature's inputs.
"""

from __future__ import annotations

import json
import os

MODEL_VARIABLE = "RECONCILER_MLFLOW_MODEL"
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MODEL = None
SCHEMA = None  # the signature's input schema, when the model has one


def init():
    global MODEL, SCHEMA
    import mlflow.pyfunc

    # the real path: MLflow refuses a model folder reached through a symlink (`reconciler serve` links them)
    MODEL = mlflow.pyfunc.load_model(os.path.realpath(os.environ[MODEL_VARIABLE]))
    SCHEMA = MODEL.metadata.get_input_schema()


class _BadInput(Exception):
    pass


def _bad_request(message: str):
    from azureml.contrib.services.aml_response import AMLResponse  # answered by the runtime

    return AMLResponse({"message": message}, 400, json_str=True)


def _rows(rows: list):
    """A list of rows (lists or records) as a DataFrame named by the signature, or an array
    for a tensor signature."""
    import numpy as np
    import pandas as pd

    if SCHEMA is not None and SCHEMA.is_tensor_spec():
        return np.asarray(rows)
    if rows and all(isinstance(row, dict) for row in rows):
        return pd.DataFrame.from_records(rows)
    names = SCHEMA.input_names() if SCHEMA is not None and SCHEMA.has_input_names() else None
    if names and any(not isinstance(row, list) or len(row) != len(names) for row in rows):
        raise _BadInput(f"each row needs {len(names)} values, the model's columns: {', '.join(names)}")
    try:
        return pd.DataFrame(rows, columns=names)
    except ValueError as error:
        raise _BadInput(f"the rows are not a table: {error}") from None


def _split(frame: dict):
    import pandas as pd

    if not isinstance(frame.get("data"), list):
        raise _BadInput("a DataFrame in split orient needs `data`: a list of rows")
    try:
        return pd.DataFrame(frame["data"], columns=frame.get("columns"), index=frame.get("index"))
    except ValueError as error:
        raise _BadInput(f"not a DataFrame in split orient: {error}") from None


def _named(inputs: dict):
    import numpy as np
    import pandas as pd

    if SCHEMA is not None and SCHEMA.is_tensor_spec():
        return {name: np.asarray(value) for name, value in inputs.items()}
    try:
        return pd.DataFrame({name: value if isinstance(value, list) else [value] for name, value in inputs.items()})
    except ValueError as error:
        raise _BadInput(f"named inputs are not columns of one length: {error}") from None


def _azure_input(value):
    if isinstance(value, dict) and "data" in value and set(value) <= {"columns", "data", "index"}:
        return _split(value)
    if isinstance(value, list):
        return _rows(value)
    if isinstance(value, dict):
        return _named(value)
    raise _BadInput("input_data must be a DataFrame in split orient, a list of rows, or a dict of named inputs")


def _mlflow_input(key: str, value):
    import pandas as pd

    if key == "dataframe_split":
        if not isinstance(value, dict):
            raise _BadInput("dataframe_split must be an object with columns and data")
        return _split(value)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise _BadInput("dataframe_records must be a list of records")
        return pd.DataFrame.from_records(value)
    return _named(value) if isinstance(value, dict) else _rows(value)


def _jsonable(value):
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records"))
    if isinstance(value, pd.Series):
        return json.loads(value.to_json(orient="values"))
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _request(body):
    """(the model's input, its params, whether to answer in MLflow's shape)."""
    if not isinstance(body, dict):
        raise _BadInput("the request must be a JSON object with input_data")
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise _BadInput("params must be an object")
    if "input_data" in body:
        return _azure_input(body["input_data"]), params, False
    given = [key for key in MLFLOW_KEYS if key in body]
    if len(given) != 1:
        raise _BadInput(
            "expected input_data (Azure's format) or one of "
            + ", ".join(MLFLOW_KEYS)
            + " (MLflow's)"
            + (f", not {' and '.join(given)}" if given else "")
        )
    return _mlflow_input(given[0], body[given[0]]), params, True


def run(raw_data):
    from mlflow.exceptions import MlflowException

    try:
        data, params, mlflow_shape = _request(json.loads(raw_data))
    except ValueError as error:
        return _bad_request(f"the request body is not JSON: {error}")
    except _BadInput as error:
        return _bad_request(str(error))
    try:
        predictions = MODEL.predict(data, params=params) if params else MODEL.predict(data)
    except MlflowException as error:
        if error.get_http_status_code() == 400:  # the input does not match the signature
            return _bad_request(error.message)
        raise
    result = _jsonable(predictions)
    return {"predictions": result} if mlflow_shape else result


def __reconciler_schemas__():
    """(input schema, output schema) for /swagger.json, from the model's signature."""
    if SCHEMA is None or not SCHEMA.has_input_names() or SCHEMA.is_tensor_spec():
        return None
    columns = {spec.name: {"type": _json_type(str(getattr(spec, "type", "")))} for spec in SCHEMA.inputs if spec.name}
    row = {"type": "array", "items": {}, "minItems": len(columns), "maxItems": len(columns)}
    frame = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string", "enum": list(columns)}},
            "index": {"type": "array", "items": {}},
            "data": {"type": "array", "items": row},
        },
        "x-columns": columns,
    }
    example = {"input_data": {"columns": list(columns), "index": [0], "data": [[None] * len(columns)]}}
    inputs = {"type": "object", "required": ["input_data"], "properties": {"input_data": frame}, "example": example}
    return inputs, {"type": "array", "items": {}}


def _json_type(mlflow_type: str) -> str:
    name = mlflow_type.lower().rsplit(".", 1)[-1]
    if name in ("double", "float"):
        return "number"
    if name in ("integer", "long"):
        return "integer"
    if name == "boolean":
        return "boolean"
    return "string"
