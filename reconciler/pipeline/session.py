"""What one run keeps from start to end: the caches, the secrets, and the engine once asked for."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.cachedir import cache_dir
from reconciler.desired.digest import Digester
from reconciler.desired.secrets import SecretSource
from reconciler.desired.statcache import StatCache
from reconciler.desired.state import runtime_digest
from reconciler.desired.wheels import WheelCache
from reconciler.engine.docker import Engine, EngineUnavailable

if TYPE_CHECKING:
    from reconciler.execute import Executor, Progress


class Session:
    def __init__(
        self,
        root: Path | None = None,
        *,
        build_slots: int = 1,
        secrets_file: Path | None = None,
        data_root: Path | None = None,
    ):
        self.cache_root = root or cache_dir()
        self.data_root = data_root  # sync: where collected data is kept, outside the clone
        self.secrets = SecretSource(self.cache_root, secrets_file)
        self.stat_cache = StatCache(self.cache_root / "statcache.sqlite")
        self.digester = Digester(self.stat_cache)
        self.wheels = WheelCache(self.cache_root / "wheels")
        self.build_slots = threading.BoundedSemaphore(build_slots)
        self._engine: Engine | None = None
        self._no_engine: EngineUnavailable | None = None

    @property
    def engine(self) -> Engine:
        """The Docker engine, connected on first use (EngineUnavailable if none answers, asked once)."""
        if self._no_engine is not None:
            raise self._no_engine
        if self._engine is None:
            try:
                self._engine = Engine.connect()
            except EngineUnavailable as error:
                self._no_engine = error
                raise
        return self._engine

    @functools.cached_property
    def runtime_digest(self) -> str:
        """The serving runtime's files, the same for every package: digested once per run."""
        return runtime_digest(self.digester)

    def executor(self, progress: Progress | None = None, should_stop: Callable[[], bool] = lambda: False) -> Executor:
        """The executor, imported here: a plan that changes nothing never loads it, nor the
        builders and renderers it imports (a no-op plan is mostly start-up time)."""
        from reconciler.execute import Executor

        return Executor(
            engine=lambda: self.engine,
            wheels=self.wheels,
            digester=self.digester,
            build_slots=self.build_slots,
            progress=progress,
            should_stop=should_stop,
        )

    def close(self) -> None:
        self.stat_cache.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
