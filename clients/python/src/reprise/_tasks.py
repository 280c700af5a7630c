"""A registered task: its handler, how to call it, and its declaration on the wire."""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

from reprise.v1 import types_pb2

from ._durations import Seconds, as_seconds, to_duration
from .context import AttemptContext
from .retries import Retries, RetriesOption, RetryBudget, When, normalize, to_retry_policy

_BAD_NAME = re.compile(r"[\s\x00-\x1f\x7f]")
MAX_TIMEOUT = 365 * 86_400


@dataclass(frozen=True)
class TaskSpec:
    name: str
    handler: Callable[..., Any]
    retries: Retries | None
    timeout: float | None
    arity: int  # how many of (args, ctx) the handler takes
    retry_budget: RetryBudget | None = None

    @property
    def when(self) -> When | None:
        return self.retries.when if self.retries else None

    def definition(self) -> types_pb2.TaskDefinition:
        definition = types_pb2.TaskDefinition(name=self.name)
        policy = to_retry_policy(self.retries)
        if policy is not None:
            definition.retry_policy.CopyFrom(policy)
        if self.timeout:
            definition.timeout.CopyFrom(to_duration(self.timeout))
        if self.retry_budget is not None:
            definition.retry_budget.CopyFrom(self.retry_budget.to_wire())
        return definition

    @cached_property
    def is_async(self) -> bool:
        """An `async def` handler (or an object whose __call__ is one): it runs on the worker's event loop."""
        return inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(getattr(self.handler, "__call__", None))

    def call(self, args: Any, context: AttemptContext) -> Any:
        return self.handler(*(args, context)[: self.arity])

    async def call_async(self, args: Any, context: AttemptContext) -> Any:
        return await self.handler(*(args, context)[: self.arity])


def make_task(
    handler: Callable[..., Any],
    name: str | None,
    retries: RetriesOption,
    timeout: Seconds | None,
    retry_budget: RetryBudget | None = None,
) -> TaskSpec:
    if not callable(handler):
        raise TypeError(f"task: the handler must be callable; got {handler!r}")
    task_name = name or getattr(handler, "__name__", None)
    if not task_name or len(task_name.encode("utf-8")) > 256 or _BAD_NAME.search(task_name):
        raise ValueError(f"task name: must be 1 to 256 bytes with no whitespace or control characters; got {task_name!r}")
    timeout_seconds = None
    if timeout is not None:
        timeout_seconds = as_seconds(timeout, f"task {task_name}: timeout")
        if timeout_seconds > MAX_TIMEOUT:
            raise ValueError(f"task {task_name}: timeout must be at most 365 days; got {timeout!r}")
    if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
        raise TypeError(f"task {task_name}: retry_budget must be None or a RetryBudget; got {retry_budget!r}")
    return TaskSpec(task_name, handler, normalize(retries), timeout_seconds or None, _arity(handler), retry_budget)


def _arity(handler: Callable[..., Any]) -> int:
    """Handlers take (), (args) or (args, ctx): the TS client's (args, ctx), trimmed to what the function accepts."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return 1
    positional = 0
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            return 2
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return min(positional, 2)
