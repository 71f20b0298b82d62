"""Adaptive batching: concurrent /score requests scored by one run() call.

A model's fixed cost per call (a RandomForest: 8 ms for 2 rows, 11 ms for 64) caps one
worker near 120 calls/s however fast the server is; only scoring several requests in one
call goes past it. Off unless `inference.batching` is set (RECONCILER_BATCH_MAX_SIZE).

How a batch forms, without changing the entry script:
- A batch is a call queued on the entry-script thread; requests join it until the thread
  starts it (or it holds `max_batch_size` rows). So under load a batch gathers what arrived
  while the previous call ran, and costs no wait of its own.
- On an idle thread a request goes at once, unless other requests are already being read:
  then it waits at most `max_latency_ms` for them.
- What joins: plain `run(raw_data)` scripts given Azure's `{"data": [row, ...]}`, and
  `@input_schema` scripts whose array parameters (NumPy, pandas records, lists) are joined
  along the first axis (their other parameters must be equal). Everything else (GET,
  @rawhttp, request_headers, other shapes, more rows than a batch holds) runs alone, unchanged.

A batch of one is called with the request's own arguments, so a lone request sees exactly
what it would without batching. A larger batch's answer is split by each request's row
count; one that does not split (a scalar, a length that is not the row count) is said once
and turns batching off in this worker, and its requests run again one by one. A batch whose
run() raises or times out runs its requests again alone, so only the request at fault fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .runner import RunThread, ScoringTimeout
from .user_script import EntryScript, Request

log = logging.getLogger("reconciler.runtime")
# a larger body runs alone, unparsed: reading it on the event loop would hold every other request,
# and it is likely more rows than a batch holds anyway
MAX_PARSED_BODY = 1 << 20


class Unsplittable(Exception):
    """run()'s answer to a batch has no item per row."""


@dataclass
class Item:
    """One request in a batch: its arguments alone, its rows, and where its answer goes."""

    arguments: dict[str, Any]
    rows: dict[str, list]  # per joined parameter, this request's rows
    count: int
    key: tuple  # requests join only a batch with the same key
    future: asyncio.Future
    joined_at: float = field(default_factory=time.perf_counter)


def _array_parameters(script: EntryScript) -> frozenset[str]:
    """The @input_schema parameters whose swagger type is an array: joined along the first axis."""
    schemas = script.schemas()
    properties = (schemas[0] or {}).get("properties", {}) if schemas else {}
    return frozenset(name for name, schema in properties.items() if schema.get("type") == "array")


class Shape:
    """How one entry script's requests join a batch, and how a batch's answer splits."""

    def __init__(self, script: EntryScript):
        self.script = script
        self.plain = not script.raw_http and not script.decorated and not script.wants_headers
        self.arrays = _array_parameters(script) if script.decorated and not script.wants_headers else frozenset()
        self.parameter = script.parameters[0].name

    def item(self, request: Request, arguments: dict, future: asyncio.Future) -> Item | None:
        """The request as a batch item, or None when it runs alone."""
        if request.method != "POST":
            return None
        if self.plain:
            raw = arguments[self.parameter]
            if len(raw) > MAX_PARSED_BODY:
                return None
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                return None
            if not isinstance(body, dict) or body.keys() != {"data"} or not isinstance(body["data"], list):
                return None
            rows = {"data": body["data"]}
            return Item(arguments, rows, len(body["data"]), (), future) if rows["data"] else None
        if not self.arrays:
            return None
        rows = {name: arguments[name] for name in self.arrays if name in arguments}
        counts = {len(value) if isinstance(value, list) else -1 for value in rows.values()}
        if len(counts) != 1 or min(counts) <= 0:
            return None
        try:
            key = tuple((k, json.dumps(v, sort_keys=True)) for k, v in sorted(arguments.items()) if k not in rows)
        except (TypeError, ValueError, RecursionError):
            return None
        return Item(arguments, rows, counts.pop(), key, future)

    def merged(self, items: list[Item]) -> dict[str, Any]:
        """run()'s arguments for the batch: each joined parameter's rows, in the items' order."""
        if self.plain:
            return {self.parameter: json.dumps({"data": [row for item in items for row in item.rows["data"]]})}
        arguments = dict(items[0].arguments)
        for name in items[0].rows:
            arguments[name] = [row for item in items for row in item.rows[name]]
        return arguments


def split(answer: Any, counts: list[int]) -> list[Any]:
    """The answer's rows, cut by each request's row count: a list, a NumPy array, a pandas
    frame or series, or a dict of equal-length lists."""
    total = sum(counts)
    edges = [sum(counts[:i]) for i in range(len(counts) + 1)]
    if isinstance(answer, dict):
        if not answer or not all(_length(value) == total for value in answer.values()):
            raise Unsplittable(f"a dict whose values are not all lists of {total} items, one per row")
        return [{key: _slice(value, a, b) for key, value in answer.items()} for a, b in zip(edges, edges[1:])]
    length = _length(answer)
    if length is None:
        raise Unsplittable(f"a {type(answer).__name__}, not one item per row")
    if length != total:
        raise Unsplittable(f"{length} items for {total} rows")
    return [_slice(answer, a, b) for a, b in zip(edges, edges[1:])]


def _length(value: Any) -> int | None:
    if isinstance(value, list | tuple):
        return len(value)
    if getattr(value, "ndim", 0) >= 1 and hasattr(value, "__len__"):  # a NumPy array, a pandas frame or series
        return len(value)
    return None


def _slice(value: Any, start: int, stop: int) -> Any:
    rows = getattr(value, "iloc", value)  # pandas slices by position through iloc
    return rows[start:stop]


class Batch:
    """Items gathered for one run() call; sealed by the entry-script thread when it starts."""

    def __init__(self, first: Item, capacity: int, shape: Shape):
        self.shape = shape  # the script it was formed for (a reload brings another)
        self.items = [first]
        self.rows = first.count
        self.capacity = capacity
        self.sealed = False
        self.dispatched = False
        self.sealed_at = 0.0
        self._lock = threading.Lock()  # joins come from the event loop, the seal from the thread

    def join(self, item: Item) -> bool:
        with self._lock:
            if self.sealed or item.key != self.items[0].key or self.rows + item.count > self.capacity:
                return False
            self.items.append(item)
            self.rows += item.count
            return True

    def seal(self) -> list[Item]:
        with self._lock:
            self.sealed = True
            self.sealed_at = time.perf_counter()
            return list(self.items)

    @property
    def full(self) -> bool:
        return self.rows >= self.capacity


class Batcher:
    """Puts batchable requests into batches on the run thread; everything else straight on it."""

    def __init__(
        self,
        runner: RunThread,
        max_rows: int,
        max_latency_ms: float,
        timeout_s: float,
        in_flight: Callable[[], int],
        observe: Callable[[int, list[float]], None],
    ):
        self.runner, self.max_rows, self.timeout_s = runner, max_rows, timeout_s
        self.max_latency_s = max_latency_ms / 1000
        self.in_flight, self.observe = in_flight, observe
        self.enabled = True
        self._open: Batch | None = None
        self._shape: Shape | None = None
        self._running: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    async def call(self, script: EntryScript, request: Request, arguments: dict) -> tuple[bool, Any, float]:
        """What RunThread.call answers for this request: (ok, result or error, seconds)."""
        if self._shape is None or self._shape.script is not script:  # a reload brings a new script
            self._shape, self._open = Shape(script), None
        batch = self._open
        alone = (batch is None or batch.sealed) and not self.runner.busy and self.in_flight() <= 1
        loop = asyncio.get_running_loop()
        item = self._shape.item(request, arguments, loop.create_future()) if self.enabled and not alone else None
        if item is None or item.count > self.max_rows:  # what a lone request, on an idle worker, also takes
            return await self.runner.call(script.run, arguments, self.timeout_s)
        if batch is None or not batch.join(item):
            batch = self._open = Batch(item, self.max_rows, self._shape)
            if batch.full or self.runner.busy or self.in_flight() <= 1:
                self._dispatch(batch)  # gathers in the queue; or nothing to wait for
            else:  # an idle thread, and requests being read: wait a little for them
                loop.call_later(self.max_latency_s, self._dispatch, batch)
        elif not batch.dispatched and (batch.full or len(batch.items) >= self.in_flight()):
            self._dispatch(batch)
        if batch.full and self._open is batch:
            self._open = None
        return await item.future

    def _dispatch(self, batch: Batch) -> None:
        if not batch.dispatched:
            batch.dispatched = True
            task = asyncio.ensure_future(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: Batch) -> None:
        shape = batch.shape

        def call_batch():  # on the entry-script thread
            items = batch.seal()
            arguments = items[0].arguments if len(items) == 1 else shape.merged(items)
            return shape.script.run(**arguments)

        try:
            ok, answer, seconds = await self.runner.call(call_batch, {}, self.timeout_s)
        except ScoringTimeout as timeout:
            ok, answer, seconds = False, timeout, self.timeout_s
        items = batch.items  # sealed by now: the call has started
        self.observe(batch.rows, [batch.sealed_at - item.joined_at for item in items])
        if len(items) == 1:
            _answer(items[0], ok, answer, seconds)
            return
        if ok:
            try:
                parts = split(answer, [item.count for item in items])
            except Unsplittable as mismatch:
                if self.enabled:  # said once: batches queued before this one may fail to split too
                    self._warn(mismatch, len(items), batch.rows)
                self.enabled = False
            else:
                for item, part in zip(items, parts):
                    _answer(item, True, part, seconds)
                return
        await asyncio.gather(*(self._alone(item, shape) for item in items))

    @staticmethod
    def _warn(mismatch: Unsplittable, requests: int, rows: int) -> None:
        log.warning(
            "batching is off in this worker: run() answered a batch of %d requests (%d rows) with %s; "
            "they run again one by one, as every request from now on",
            requests,
            rows,
            mismatch,
        )

    async def _alone(self, item: Item, shape: Shape) -> None:
        try:
            _answer(item, *await self.runner.call(shape.script.run, item.arguments, self.timeout_s))
        except ScoringTimeout as timeout:
            _answer(item, False, timeout, self.timeout_s)


def _answer(item: Item, ok: bool, value: Any, seconds: float) -> None:
    if item.future.done():
        return
    if not ok and isinstance(value, ScoringTimeout):
        item.future.set_exception(value)
    else:
        item.future.set_result((ok, value, seconds))
