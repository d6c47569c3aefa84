"""What the SDK raises. Everything is a ``CommuniputeError``; the server's refusals are
``ApiError`` with the fields of its error envelope (docs/api.md, "Errors")."""

from __future__ import annotations

from typing import Any


class CommuniputeError(Exception):
    """The base of every error this package raises on purpose."""


class ConfigError(CommuniputeError):
    """No server or token is configured, or the config file can't be read."""


class ConnectionFailed(CommuniputeError):
    """The server could not be reached (or the connection broke) after the retries."""


class ApiError(CommuniputeError):
    """The server refused a request: its HTTP ``status`` and the envelope's ``code`` (stable
    snake_case: branch on it), ``message`` (for people) and ``fields`` (a field or header
    name -> its messages, ``{}`` unless the input was bad)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, list[str]] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.message} ({self.status} {self.code})"
        for name, messages in self.fields.items():
            text += f"\n  {name}: {'; '.join(messages)}"
        return text


class AuthenticationFailed(ApiError):
    """401: no token, or one that was revoked or expired (``communipute login`` again)."""


class InsufficientCredits(ApiError):
    """402: the wallet does not cover the job's cap (``insufficient_credits``), and the other
    402s of docs/api.md."""


class NotFound(ApiError):
    """404: absent, or not yours (the server does not tell the difference)."""


class JobWaitTimeout(CommuniputeError, TimeoutError):
    """``Job.wait(timeout=...)`` gave up; the job goes on (``job`` is the last seen state)."""

    def __init__(self, job: Any, timeout: float) -> None:
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g} s")
        self.job = job
        self.timeout = timeout


class GroupWaitTimeout(JobWaitTimeout):
    """Waiting on a job group's results gave up (``timeout``); the group goes on (``group``
    is the last seen state, also as ``job``)."""

    def __init__(self, group: Any, timeout: float) -> None:
        CommuniputeError.__init__(
            self, f"job group {group.id} is still {group.status} after {timeout:g} s"
        )
        self.job = self.group = group
        self.timeout = timeout


class TaskError(CommuniputeError):
    """A task (of ``map``, ``.remote()`` or an ``Executor``) that did not succeed: its function
    raised, its script exited non-zero, or its job ended otherwise (timed out, cancelled, out of
    its cap, never started).

    ``index`` (in the inputs), ``job_id``, ``status`` (the task's: failed, timed_out, cancelled,
    budget_exhausted, skipped), ``exit_code``, ``reason`` (the server's words), ``error_type``
    and ``message`` (a function's exception, ``"ValueError"``, ``"bad input"``; a script's last
    exception line), ``traceback`` (the remote one, text), ``log`` (the task's log: a script's,
    or one that left no error of its own), ``exception`` (a function's exception itself, when
    it unpickled here; it is also this error's ``__cause__``) and ``stage`` (``load``, ``call``,
    ``result`` for a function; ``""`` otherwise).
    """

    def __init__(
        self,
        *,
        index: int,
        job_id: int | None,
        status: str,
        exit_code: int | None,
        reason: str = "",
        error_type: str = "",
        message: str = "",
        traceback: str = "",
        log: str = "",
        exception: BaseException | None = None,
        stage: str = "",
    ) -> None:
        self.index = index
        self.job_id = job_id
        self.status = status
        self.exit_code = exit_code
        self.reason = reason
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.log = log
        self.exception = exception
        self.stage = stage
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        where = f"task {self.index}" + (f" (job {self.job_id})" if self.job_id else "")
        text = f"{where} {self.status}"
        if self.exit_code is not None:
            text += f", exit {self.exit_code}"
        if self.error_type:
            text += f": {self.error_type}" + (f": {self.message}" if self.message else "")
        elif self.reason:
            text += f": {self.reason}"
        return text

    def __str__(self) -> str:
        if self.traceback:
            return f"{self.summary}\n\nthe remote traceback:\n{self.traceback.rstrip()}"
        return self.summary

    def __reduce__(self) -> Any:
        return (_task_error, (self.__dict__.copy(),))


def _task_error(state: dict[str, Any]) -> TaskError:
    error = TaskError.__new__(TaskError)
    error.__dict__.update(state)
    Exception.__init__(error, error.summary)
    return error


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a host, as text: set as that exception's
    ``__cause__`` when it is raised here (as ``concurrent.futures.ProcessPoolExecutor`` does)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class PythonVersionMismatch(CommuniputeError, ValueError):
    """A function can't be shipped: pickles don't cross Python versions, and this Python's
    major.minor (``local``) is not the hosts' runner's (``runner``)."""

    def __init__(self, local: tuple[int, int], runner: tuple[int, int]) -> None:
        self.local = local
        self.runner = runner
        super().__init__(
            f"this is Python {local[0]}.{local[1]} and the hosts run Python "
            f"{runner[0]}.{runner[1]} (the runner image's python3): a function travels as a "
            "pickle, and pickles don't cross Python versions. Run the client on Python "
            f"{runner[0]}.{runner[1]}, or map a script instead (client.map('task.py', inputs)); "
            "if your marketplace's runner image has another Python, say which in "
            "COMMUNIPUTE_RUNNER_PYTHON (docs/sdk.md)"
        )


class UploadFailed(CommuniputeError):
    """An input or code upload could not be completed (the connection kept failing)."""


def api_error(
    status: int,
    body: Any,
    *,
    reason: str = "",
    retry_after: float | None = None,
) -> ApiError:
    """The typed error for a refused response: ``body`` is its parsed JSON (or None)."""
    code, message, fields = f"http_{status}", reason or f"HTTP {status}", {}
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        code = str(envelope.get("code") or code)
        message = str(envelope.get("message") or message)
        given = envelope.get("fields")
        if isinstance(given, dict):
            fields = {
                str(name): [str(m) for m in value] if isinstance(value, list) else [str(value)]
                for name, value in given.items()
            }
    kind = {401: AuthenticationFailed, 402: InsufficientCredits, 404: NotFound}.get(
        status, ApiError
    )
    return kind(status, code, message, fields, retry_after=retry_after)
