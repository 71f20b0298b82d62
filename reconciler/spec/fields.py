"""The building blocks of the manifest's fields: value patterns (each with a hint a person
reads instead of the regular expression), constrained types, and the strict base model.

Every string that reaches the generated Dockerfile is constrained by a pattern (no
newlines, quotes, `$` or leading `-` where they could change its meaning).
"""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

PACKAGE_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
RELATIVE_PATH = r"^[^/\s][^\n\r\t]*$"
PYTHON_SCRIPT = r"^[^/\s][^\n\r\t]*\.py$"
PYTHON_VERSION = r"^3\.(9|1[0-9])$"
IMAGE_REFERENCE = r"^[a-z0-9][A-Za-z0-9._/:@-]{0,254}$"
REPOSITORY = r"^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$"
REGISTRY = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"
DEBIAN_PACKAGE = r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_VALUE = r"^[^\n\r\x00]*$"
CONTAINER_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"
BIND_ADDRESS = r"^(127\.0\.0\.1|0\.0\.0\.0|localhost|::1|::)$"
REQUIREMENT = r"^[A-Za-z0-9][^\n\r]*$"
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
DNS_1035_LABEL = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"  # what a Service name must be: a letter first
INDEX_URL = r"^https?://[^\s]+$"
CPU_QUANTITY = r"^([1-9][0-9]{0,5}m|[0-9]{1,4}(\.[0-9]{1,3})?)$"
MEMORY_QUANTITY = r"^[1-9][0-9]{0,9}(Ki|Mi|Gi|Ti|k|M|G|T)?$"
LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LOG_SIZE = r"^[1-9][0-9]{0,5}[kmg]$"

# What a person should read instead of a regular expression when a value is refused.
PATTERN_HINTS = {
    PACKAGE_NAME: "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
    MODEL_NAME: "use letters, digits, '_', '.' and '-', starting with a letter or digit",
    RELATIVE_PATH: "use a path relative to the manifest's folder, on one line",
    PYTHON_SCRIPT: "use a .py file relative to the source directory, on one line",
    PYTHON_VERSION: 'use a quoted Python version from "3.9" to "3.19", such as "3.11"',
    IMAGE_REFERENCE: "use an image reference such as python:3.11-slim or registry:5000/team/base:1",
    REPOSITORY: "use lowercase path components such as team/sklearn-regression",
    REGISTRY: "use HOST or HOST:PORT, such as 127.0.0.1:5000",
    DEBIAN_PACKAGE: "use a Debian package name such as libgomp1 (optionally =VERSION)",
    ENV_NAME: "use letters, digits and '_', not starting with a digit",
    ENV_VALUE: "values must fit on one line",
    CONTAINER_NAME: "use letters, digits, '_', '.' and '-', starting with a letter or digit",
    BIND_ADDRESS: "use 127.0.0.1 (the default), ::1, localhost, or 0.0.0.0 to listen on every interface",
    REQUIREMENT: "use a requirement such as scikit-learn==1.5.2 (no pip options)",
    DNS_LABEL: "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
    INDEX_URL: "use an http(s) URL such as https://pypi.example.com/simple",
    CPU_QUANTITY: 'use cores such as "1", "0.5" or millicores such as "500m"',
    MEMORY_QUANTITY: "use bytes with a unit such as 512Mi or 2Gi",
    LABEL_KEY: "use a Kubernetes label key such as team or example.com/team",
    LABEL_VALUE: "use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    LOG_SIZE: "use a size with k, m or g, such as 20m",
}

DEFAULT_CONTAINER_MEMORY = "4Gi"  # a container-mode limit unless output.resources.memory says otherwise
# kubernetes mode, for what output.resources does not give: requests (the scheduler places the pod
# by them) and a memory limit equal to the request; no CPU limit (throttling is a choice, not a default)
KUBERNETES_DEFAULT_CPU = "500m"
KUBERNETES_DEFAULT_MEMORY = "2Gi"

# Set by reconciler from the manifest; a variable cannot override them.
RESERVED_VARIABLES = frozenset(
    {
        "AZUREML_MODEL_DIR",
        "AZUREML_ENTRY_SCRIPT",
        "AML_APP_ROOT",
        "WORKER_COUNT",
        "SCORING_TIMEOUT_MS",
        "PATH",
        "VIRTUAL_ENV",
        "PYTHONPATH",
    }
)


def pattern(regex: str, **kwargs) -> type[str]:
    return Annotated[str, StringConstraints(pattern=regex), Field(**kwargs)]


def _valid_requirement(text: str) -> str:
    from packaging.requirements import Requirement  # here: only manifests with pip entries need it

    try:
        Requirement(text)
    except ValueError as error:  # packaging's InvalidRequirement
        reason = str(error).splitlines()[0]
        raise ValueError(f"not a valid requirement: {reason}") from None
    return text


PipRequirement = Annotated[
    str, StringConstraints(pattern=REQUIREMENT, max_length=500), AfterValidator(_valid_requirement)
]
SecretName = Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=256)]
VariableValue = Annotated[str, StringConstraints(pattern=ENV_VALUE, max_length=32_768)] | int | float | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
