"""The JSON schema is generated from the models, committed, and agrees with them."""

from __future__ import annotations

import json

import jsonschema
import pydantic
import pytest
import yaml

from reconciler.spec.manifest import Manifest, json_schema

from .conftest import EXAMPLES, ROOT

SCHEMA_FILE = ROOT / "schemas" / "package.schema.json"
VALID_BASE = {"name": "pkg", "models": [{"name": "m", "version": 1, "path": "model.pkl"}]}


def _with(**changes) -> dict:
    manifest = json.loads(json.dumps(VALID_BASE))
    for dotted, value in changes.items():
        node = manifest
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return manifest


VALID = [
    VALID_BASE,
    _with(inference__environment__pip=["scikit-learn==1.5.2", "joblib"]),
    _with(inference__environment__variables={"LOG_LEVEL": "info", "N": 4, "ON": True, "F": 0.5}),
    _with(output__mode="container", output__container={"port": 8080, "host": "0.0.0.0"}),
    _with(output__image={"repository": "team/model", "registry": "127.0.0.1:5000", "push": True}),
    _with(labels={"team": "search"}, description="anything"),
]

INVALID = [
    {"models": VALID_BASE["models"]},  # no name
    _with(name="Not_Valid"),
    _with(name="x" * 64),
    _with(models=[]),
    _with(models=[{"name": "m", "version": 0, "path": "model.pkl"}]),
    _with(models=[{"name": "m", "version": 1}]),
    _with(models=[{"name": "m", "version": 1, "path": "/abs/model.pkl"}]),
    _with(extra_field=1),
    _with(inference__environment__python=3.11),
    _with(inference__environment__python="2.7"),
    _with(inference__environment__base_image="python:3.11\nRUN curl evil"),
    _with(inference__environment__system_packages=["curl; rm -rf /"]),
    _with(inference__environment__system_packages=["--allow-unauthenticated"]),
    _with(inference__environment__pip=["--index-url=http://x"]),
    _with(inference__environment__variables={"BAD-NAME": "x"}),
    _with(inference__environment__variables={"OK": "line\nbreak"}),
    _with(inference__environment__variables={"OK": [1]}),
    _with(inference__environment__platform="windows/amd64"),
    _with(inference__server={"workers": 0}),
    _with(inference__entry_script="score.txt"),
    _with(output__mode="kubernetes"),  # needs output.image.registry
    _with(output__mode="k8s"),
    _with(
        output__mode="kubernetes", output__image={"registry": "r:5000"}, output__kubernetes={"autoscale": {"max": 3}}
    ),
    _with(output__kubernetes={"replicas": -1}),
    _with(output__kubernetes={"namespace": "Not_A_Label"}),
    _with(output__resources={"cpu": "lots"}),
    _with(output__resources={"memory": "2GB"}),
    _with(output__container={"port": 70000}),
    _with(output__container={"host": "10.0.0.1"}),
    _with(output__image={"repository": "Upper/Case"}),
    _with(output__image={"registry": "host:port:bad"}),
]


def test_committed_schema_is_what_the_models_generate():
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == json_schema(), (
        "schemas/package.schema.json is stale: run `reconciler schema > schemas/package.schema.json`"
    )


def test_every_example_validates_against_the_schema():
    schema = json.loads(SCHEMA_FILE.read_text())
    manifests = sorted(EXAMPLES.glob("*/package.yaml"))
    assert len(manifests) >= 2
    for path in manifests:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
        Manifest.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("manifest", VALID, ids=lambda m: json.dumps(m)[:60])
def test_schema_and_models_accept_the_same_valid_manifests(manifest):
    jsonschema.validate(manifest, json_schema())
    Manifest.model_validate(manifest)


@pytest.mark.parametrize("manifest", INVALID, ids=lambda m: json.dumps(m)[-70:])
def test_schema_and_models_refuse_the_same_invalid_manifests(manifest):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, json_schema())
    with pytest.raises(pydantic.ValidationError):
        Manifest.model_validate(manifest)
