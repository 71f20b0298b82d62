"""Conda environment files (`environment.conda_file`), read as Azure projects write them.

Azure's `Environment.from_conda_specification` and CLI v2's `conda_file` are how most Azure
projects declare dependencies. We build from pip wheels resolved on the host, so a conda
file is read as data: its `python=3.x` sets the Python version, its `pip:` section is a
list of requirements (checked like a requirements file), and its conda packages are
mapped to their PyPI names (a table of the usual renames; channels are ignored). A conda
package that exists only as a system library has no wheel: that is an error naming it and
its line. Azure's own serving packages are recognised and left out: the runtime replaces
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.errors import InvalidInput, Problem
from reconciler.spec.yamldoc import YamlError, load_yaml

# conda name -> PyPI name, where they differ
PYPI_NAMES = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "py-xgboost-gpu": "xgboost",
    "tensorflow-gpu": "tensorflow",
    "opencv": "opencv-python-headless",
    "py-opencv": "opencv-python-headless",
    "pillow-simd": "pillow",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "msgpack-python": "msgpack",
    "ruamel_yaml": "ruamel.yaml",
    "typing_extensions": "typing-extensions",
    "libxgboost": "xgboost",
    "onnxruntime-cpp": "onnxruntime",
}

# conda packages that are tools or system libraries: nothing to install from PyPI, fine to skip
NOT_PYTHON_PACKAGES = frozenset({"pip", "setuptools", "wheel", "conda", "python_abi", "ca-certificates"})

# conda packages with no wheel on PyPI: an image built from wheels cannot have them
NO_PYPI_EQUIVALENT = frozenset(
    {
        "cudatoolkit",
        "cudnn",
        "cuda-toolkit",
        "cuda-runtime",
        "mkl",
        "mkl-service",
        "mkl_fft",
        "mkl_random",
        "intel-openmp",
        "libgcc-ng",
        "libstdcxx-ng",
        "libgomp",
        "openssl",
        "openblas",
        "libopenblas",
        "blas",
        "nccl",
        "magma-cuda",
        "r-base",
        "nodejs",
        "gxx_linux-64",
        "gcc_linux-64",
    }
)

# Azure's serving stack: our runtime takes its place
AZURE_SERVING = frozenset({"azureml-defaults", "azureml-inference-server-http", "azureml-core"})

_CONDA_SPEC = re.compile(
    r"^(?:(?P<channel>[A-Za-z0-9_.\-/]+)::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<version>[^\s\[]*)?(?:\s+(?P<build>\S+))?$"
)
_PIP_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._\-]*)")


@dataclass(frozen=True)
class CondaLine:
    line: int | None
    text: str


@dataclass(frozen=True)
class CondaEnvironment:
    path: Path
    python: str | None  # "3.11": major.minor, when the file pins it
    requirements: tuple[CondaLine, ...]  # PyPI requirements: mapped conda packages, then the pip section
    replaced: tuple[str, ...]  # Azure serving packages left out


def _problem(path: Path, line: int | None, message: str) -> Problem:
    return Problem(str(path), message, line, field="conda_file")


def _python_version(path: Path, line: int | None, version: str, problems: list[Problem]) -> str | None:
    if not version:
        return None  # any Python: the manifest's stands
    match = re.match(r"^=*(\d+)\.(\d+)(?:\.[\d*]+)?(?:=.*)?$", version)
    if not match:
        problems.append(
            _problem(
                path, line, f"python{version} is not a Python version the image can be built for; write python=3.11"
            )
        )
        return None
    return f"{match.group(1)}.{match.group(2)}"


def _pypi_requirement(name: str, version: str) -> str:
    """A conda version spec as a PEP 440 one: `=1.2` (conda's prefix match) -> `==1.2.*`."""
    version = version.strip()
    if not version:
        return name
    if version.startswith("=") and not version.startswith("=="):
        version = version[1:].split("=")[0]  # `=1.2=py311_0`: the build string is conda's business
        return f"{name}=={version}" if version.endswith("*") or version.count(".") >= 2 else f"{name}=={version}.*"
    if version[0].isdigit():
        return f"{name}=={version}"
    return f"{name}{version}"


def read_conda_file(path: Path) -> CondaEnvironment:
    """The conda file's Python version and its dependencies as PyPI requirements; InvalidInput
    listing every problem, each with the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidInput([_problem(path, None, f"cannot read the conda file: {error.strerror}")]) from None
    try:
        document = load_yaml(raw)
    except YamlError as error:
        line = error.position.line if error.position else None
        raise InvalidInput([_problem(path, line, error.message)]) from None
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        raise InvalidInput([_problem(path, 1, "a conda file is a mapping with a `dependencies:` list")])

    def line_of(*loc) -> int | None:
        position = document.position_of(("dependencies", *loc))
        return position.line if position else None

    problems: list[Problem] = []
    python: str | None = None
    requirements: list[CondaLine] = []
    pip_section: list[CondaLine] = []
    replaced: list[str] = []
    for index, entry in enumerate(data.get("dependencies") or []):
        if isinstance(entry, dict) and set(entry) == {"pip"} and isinstance(entry["pip"], list):
            for pip_index, text in enumerate(entry["pip"]):
                line = line_of(index, "pip", pip_index)
                name = _PIP_NAME.match(str(text))
                if name and name.group(1).lower() in AZURE_SERVING:
                    replaced.append(name.group(1).lower())
                else:
                    pip_section.append(CondaLine(line, str(text)))
            continue
        line = line_of(index)
        match = _CONDA_SPEC.match(str(entry).strip()) if isinstance(entry, str | int | float) else None
        if match is None:
            problems.append(_problem(path, line, f"not a conda package spec: {str(entry)[:80]!r}"))
            continue
        name, version = match.group("name").lower(), (match.group("version") or "")
        if name == "python":
            python = _python_version(path, line, version, problems)
        elif name in AZURE_SERVING:
            replaced.append(name)
        elif name in NOT_PYTHON_PACKAGES:
            continue
        elif name in NO_PYPI_EQUIVALENT:
            problems.append(
                _problem(
                    path,
                    line,
                    f"conda package {name} has no PyPI equivalent: the image is built from wheels; drop it "
                    "(CUDA and BLAS come with the wheels that need them) or use a base image that has it",
                )
            )
        else:
            requirements.append(CondaLine(line, _pypi_requirement(PYPI_NAMES.get(name, name), version)))
    if problems:
        raise InvalidInput(problems)
    return CondaEnvironment(path, python, tuple(requirements + pip_section), tuple(sorted(set(replaced))))
