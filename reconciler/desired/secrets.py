"""Runtime secrets: values a serving container gets in its environment, and nothing else does.

`inference.secrets` names them; their values are read when reconciler runs, from a file named
with `--secrets FILE` (`NAME=value` lines, as docker's --env-file or a .env) or else from
reconciler's own environment. A value never reaches an image, a build folder, a stamp, a label,
a log line, plan or status output, or the lock. The container hash takes a keyed digest of
each value instead (BLAKE3 keyed with a random key kept in the cache folder, readable by its
owner only), so a changed value recreates the container, and a label reveals nothing that
could be checked against a guess.
"""

from __future__ import annotations

import os
import re
import secrets as random
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from reconciler.core.errors import InvalidInput, Problem, TemporaryError
from reconciler.core.paths import display_path
from reconciler.spec.package import Package

KEY_BYTES = 32
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is a character like any other


@dataclass(frozen=True)
class SecretValues:
    """A package's secrets, by their name in the container. Shown, it names them only."""

    values: dict[str, str] = field(default_factory=dict, repr=False)
    digests: dict[str, str] = field(default_factory=dict)  # keyed: safe to hash, label and print

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.values)


def redact(text: str, values: dict[str, str]) -> str:
    """Each of `values`'s values in `text` replaced by `<secret NAME>` (the longest first, so a
    value inside another never leaves a part of it)."""
    for name, value in sorted(values.items(), key=lambda item: -len(item[1])):
        if value:
            text = text.replace(value, f"<secret {name}>")
    return text


class SecretSource:
    """Where secret values come from in one run: `--secrets FILE` first, then the environment."""

    def __init__(self, cache_root: Path, file: Path | None = None, environ: dict[str, str] | None = None):
        self.cache_root = cache_root
        self.file = file
        self.environ = os.environ if environ is None else environ
        self._from_file: dict[str, str] | None = None
        self._key: bytes | None = None

    def for_package(self, package: Package) -> SecretValues:
        """The package's secret values and their keyed digests; InvalidInput naming every
        secret that has no value."""
        sources = package.manifest.inference.secret_sources
        if not sources:
            return SecretValues()
        available = {**self.environ, **self._file_values()}
        missing = [source for source in sources.values() if source not in available]
        if missing:
            where = (
                f"{display_path(self.file)} or the environment" if self.file else "the environment (or --secrets FILE)"
            )
            raise InvalidInput(
                [
                    package.problem(("inference", "secrets"), f"no value for {name} in {where}")
                    for name in sorted(set(missing))
                ]
            )
        values = {name: available[source] for name, source in sorted(sources.items())}
        unfit = sorted(name for name, value in values.items() if CONTROL_CHARACTER.search(value))
        if unfit:  # a value with a NUL or a newline would be cut or carried into an error: refused, never shown
            raise InvalidInput(
                [
                    package.problem(("inference", "secrets"), f"the value of {name} holds a control character")
                    for name in unfit
                ]
            )
        key = self._secret_key()
        digests = {
            name: blake3.blake3(f"{name}={value}".encode(), key=key).hexdigest() for name, value in values.items()
        }
        return SecretValues(values, digests)

    def _file_values(self) -> dict[str, str]:
        if self.file is None:
            return {}
        if self._from_file is None:
            self._from_file = read_secrets_file(self.file)
        return self._from_file

    def _secret_key(self) -> bytes:
        if self._key is None:
            self._key = load_or_create_key(self.cache_root / "secrets.key")
        return self._key


def read_secrets_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (comments, blank lines, `export`, quotes as in a .env). A line that is
    not one is an error naming the file and line, never quoting it."""
    from dotenv.parser import parse_stream

    try:
        if not path.is_file():
            raise InvalidInput([Problem(str(path), "--secrets: not a file")])
        with open(path, encoding="utf-8") as stream:
            bindings = list(parse_stream(stream))
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise InvalidInput([Problem(str(path), f"--secrets: cannot read it: {reason}")]) from None
    problems = [
        Problem(str(path), "--secrets: not a NAME=value line", line=binding.original.line)
        for binding in bindings
        if binding.error or (binding.key is not None and binding.value is None)
    ]
    if problems:
        raise InvalidInput(problems)
    return {binding.key: binding.value for binding in bindings if binding.key is not None}


def load_or_create_key(path: Path) -> bytes:
    """The key of this cache folder, made on first use. Created whole or not at all (a link
    of a finished file), so two reconcilers starting at once agree on one key."""
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        os.unlink(path)  # damaged: containers with secrets are recreated once
    except FileNotFoundError:
        pass
    except OSError as error:
        raise TemporaryError(f"cannot read {display_path(path)}: {error.strerror}") from None
    temporary = path.with_name(f".{path.name}.{random.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(random.token_bytes(KEY_BYTES))
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another reconciler made it first: use theirs
        return path.read_bytes()
    except OSError as error:
        raise TemporaryError(f"cannot write {display_path(path)}: {error.strerror}") from None
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
