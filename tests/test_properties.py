"""Random and hostile manifests: a clear error or a valid package, never a traceback,
and nothing a manifest says can add an instruction to the Dockerfile."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.errors import InvalidInput
from reconciler.desired.dockerfile import render_dockerfile
from reconciler.desired.state import dockerfile_settings
from reconciler.spec.package import load_package

from .conftest import SIMPLE_SCORE

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "a\nRUN rm -rf /",
        '"',
        "'",
        "$HOME",
        "${PATH}",
        "\\",
        "--index-url=http://x",
        "-e .",
        "../../etc/passwd",
        "/etc/passwd",
        "model/model.txt",
        "score.py",
        "x" * 300,
        "ü",
        "\x00",
        "\t",
        "#",
        "*",
        "?",
        "python:3.11-slim",
        "3.11",
        "linux/amd64",
        "container",
        "127.0.0.1",
        "A_B",
        "numpy==1.0",
        "name",
        "models",
    ]
)
SCALARS = st.one_of(
    HOSTILE_TEXT,
    st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "name",
            "models",
            "inference",
            "output",
            "environment",
            "server",
            "entry_script",
            "source_directory",
            "python",
            "base_image",
            "pip",
            "requirements",
            "system_packages",
            "variables",
            "mode",
            "directory",
            "image",
            "container",
            "port",
            "host",
            "workers",
            "timeout_ms",
            "version",
            "path",
            "labels",
            "description",
            "platform",
            "push",
            "registry",
        ]
    ),
    HOSTILE_TEXT,
    st.text(max_size=8),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25,
)


def _near_valid() -> st.SearchStrategy[dict]:
    """Manifests close to valid, with hostile values in every field."""
    model = st.fixed_dictionaries(
        {
            "name": st.one_of(st.just("m"), HOSTILE_TEXT),
            "version": st.one_of(st.just(1), SCALARS),
            "path": st.one_of(st.just("model/model.txt"), HOSTILE_TEXT),
        }
    )
    environment = st.fixed_dictionaries(
        {},
        optional={
            "python": st.one_of(st.just("3.11"), SCALARS),
            "base_image": st.one_of(st.just("python:3.11-slim"), HOSTILE_TEXT),
            "pip": st.lists(HOSTILE_TEXT, max_size=3),
            "system_packages": st.lists(HOSTILE_TEXT, max_size=3),
            "variables": st.dictionaries(st.one_of(st.just("OK"), HOSTILE_TEXT), SCALARS, max_size=3),
        },
    )
    return st.fixed_dictionaries(
        {"name": st.one_of(st.just("pkg"), HOSTILE_TEXT), "models": st.lists(model, max_size=2)},
        optional={
            "inference": st.fixed_dictionaries(
                {},
                optional={
                    "entry_script": st.one_of(st.just("score.py"), HOSTILE_TEXT),
                    "source_directory": st.one_of(st.just("."), HOSTILE_TEXT),
                    "environment": environment,
                },
            ),
            "output": st.fixed_dictionaries(
                {},
                optional={
                    "mode": st.one_of(st.sampled_from(["dockerfile", "image", "container"]), HOSTILE_TEXT),
                    "directory": HOSTILE_TEXT,
                },
            ),
        },
    )


INSTRUCTION = re.compile(r"^(FROM|RUN|COPY|ENV|WORKDIR|USER|EXPOSE|HEALTHCHECK|CMD) ")


def _check(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / ".git").mkdir()
        (root / "model").mkdir()
        (root / "model" / "model.txt").write_text("1")
        (root / "score.py").write_text(SIMPLE_SCORE)
        manifest = root / "package.yaml"
        manifest.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            package = load_package(manifest)
        except InvalidInput as error:
            assert error.problems and all(p.message and p.file for p in error.problems)
            return
        dockerfile = render_dockerfile(dockerfile_settings(package))
        instructions = [line for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))]
        assert all(INSTRUCTION.match(line) for line in instructions), dockerfile
        expected = 21 + len(package.manifest.models) + len(package.manifest.inference.environment.variables)
        expected += 1 if package.manifest.inference.environment.system_packages else 0
        assert len(instructions) == expected, dockerfile


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    _check(text)


@PROPERTY_SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    _check(data)


@PROPERTY_SETTINGS
@given(TREES)
def test_arbitrary_yaml_structures(tree):
    _check(yaml.safe_dump(tree, allow_unicode=True))


@PROPERTY_SETTINGS
@given(_near_valid())
def test_near_valid_manifests_with_hostile_values(manifest):
    _check(yaml.safe_dump(manifest, allow_unicode=True))


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(
        [
            "&a [*a]",
            "!!python/name:os.system",
            "!!binary AAAA",
            "? [a, b]\n: c",
            "<<: {a: 1}",
            "a: &x 1\nb: *x",
            "a: !!timestamp 2024-99-99",
            "%YAML 1.1\n---\na: 1",
            "---\na: 1\n---\nb: 2",
            "[" * 200,
            "{" * 200,
            "a: 0x" + "f" * 500,
        ]
    )
)
def test_yaml_oddities(text):
    _check(text)
