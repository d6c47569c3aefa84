"""``Client.map``'s running part: a group's results read in input order, each turned into what
the caller gets (a function's return value, a script's ``result.json``, or a ``TaskError``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from communipute.errors import ApiError, TaskError
from communipute.groups import Group
from communipute.models import TaskResult

if TYPE_CHECKING:
    from communipute.client import Client


class MapRun:
    """A submitted map: its ``group`` and how a task's result becomes a value."""

    def __init__(
        self, client: Client, group: Group, decode: Callable[[TaskResult], Any], kind: str
    ) -> None:
        self.client = client
        self.group = group
        self.kind = kind  # "function" or "script"
        self._decode = decode

    def __repr__(self) -> str:
        return f"<MapRun {self.kind} group {self.group.id}>"

    def outcomes(
        self, index: int = 0, *, timeout: float | None = None
    ) -> Iterator[tuple[TaskResult, Any]]:
        """Each task's result and its value (or ``TaskError``), in input order, as they come."""
        for result in self.group.results(index, timeout=timeout):
            yield result, self._decode(result)

    def collect(self, *, return_exceptions: bool, timeout: float | None = None) -> list[Any]:
        """Every value in input order. ``return_exceptions``: a failed task's ``TaskError``
        takes its place; else the first failure in input order is raised as soon as it is
        read, after the rest of the group was cancelled. An interrupt (Ctrl-C) cancels the
        group too: nobody would read what it goes on to cost."""
        values: list[Any] = []
        try:
            for _, value in self.outcomes(timeout=timeout):
                if isinstance(value, TaskError) and not return_exceptions:
                    self.cancel_quietly()
                    raise value
                values.append(value)
        except KeyboardInterrupt:
            self.cancel_quietly()
            raise
        return values

    def cancel_quietly(self) -> None:
        """Cancel the group unless it has ended already."""
        try:
            self.group.cancel()
        except ApiError as exc:
            if exc.code != "group_finished":
                raise
