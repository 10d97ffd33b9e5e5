"""The errors treadle raises, all under one root, :class:`TreadleError`."""

from __future__ import annotations

from datetime import datetime


class TreadleError(Exception):
    """Root of every error that treadle raises on purpose."""


class DefinitionError(TreadleError, ValueError):
    """A workflow definition is malformed (raised by the builder or ``register``)."""


class WorkflowNotFound(TreadleError, LookupError):
    """No workflow of that name is registered, or it has no definition ``version``."""

    def __init__(
        self, name: str, version: str | None = None, known: list[str] | None = None
    ) -> None:
        if version is None:
            message = f"workflow {name!r} is not registered, here or by any worker on this database"
        else:
            message = (
                f"workflow {name!r} has no definition {version!r} "
                f"(known: {', '.join(known or []) or 'none'})"
            )
        super().__init__(message)
        self.name = name
        self.version = version


class RunNotFound(TreadleError, LookupError):
    """No run has that id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} does not exist")
        self.run_id = run_id


class InvalidTransition(TreadleError):
    """The run's status does not allow the requested operation."""

    def __init__(self, run_id: str, status: str, action: str, hint: str | None = None) -> None:
        message = f"cannot {action} run {run_id!r}: it is {status}"
        super().__init__(message if hint is None else f"{message} ({hint})")
        self.run_id = run_id
        self.status = status
        self.action = action


class RunExists(TreadleError):
    """A start named the id of a run that exists already with another workflow, or with other
    start data (compared as canonical JSON); a start with the same workflow and data returns
    the id instead."""

    def __init__(self, run_id: str, workflow: str, existing: str) -> None:
        what = (
            f"with other data (workflow {workflow!r})"
            if workflow == existing
            else f"as a run of workflow {existing!r}, not {workflow!r}"
        )
        super().__init__(f"run {run_id!r} exists already {what}")
        self.run_id = run_id
        self.workflow = workflow
        self.existing = existing


class UnknownSignal(TreadleError, LookupError):
    """The run's workflow never awaits a signal of that name."""

    def __init__(self, run_id: str, workflow: str, name: str) -> None:
        super().__init__(f"workflow {workflow!r} of run {run_id!r} awaits no signal {name!r}")
        self.run_id = run_id
        self.name = name


class UnknownApproval(TreadleError, LookupError):
    """The run's workflow has no approval of that name."""

    def __init__(self, run_id: str, workflow: str, name: str) -> None:
        super().__init__(f"workflow {workflow!r} of run {run_id!r} has no approval {name!r}")
        self.run_id = run_id
        self.name = name


class NotAnApprover(TreadleError, PermissionError):
    """Somebody who is not among an approval's approvers tried to decide it."""

    def __init__(self, run_id: str, name: str, by: str | None, approvers: list[str]) -> None:
        who = "an anonymous caller" if by is None else repr(by)
        super().__init__(
            f"{who} may not decide approval {name!r} of run {run_id!r}; approvers: {approvers}"
        )
        self.run_id = run_id
        self.name = name
        self.by = by


class ApprovalRejected(TreadleError):
    """An approval was rejected; the awaiting step fails with this error."""

    def __init__(self, name: str, by: str | None, reason: str | None) -> None:
        text = f"approval {name!r} was rejected"
        if by:
            text += f" by {by!r}"
        if reason:
            text += f": {reason}"
        super().__init__(text)
        self.name = name
        self.by = by
        self.reason = reason


class WaitTimeout(TreadleError, TimeoutError):
    """A signal or approval did not arrive before its timeout."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} timed out")
        self.kind = kind
        self.name = name


class DeadlineExceeded(TreadleError, TimeoutError):
    """A run passed its deadline (``.deadline(...)`` or ``start(deadline=...)``): it was
    cancelled, compensating, and ended CANCELLED with this error."""

    def __init__(self, run_id: str, deadline: datetime) -> None:
        super().__init__(f"run {run_id!r} passed its deadline {deadline.isoformat()}")
        self.run_id = run_id
        self.deadline = deadline


class DataError(TreadleError, ValueError):
    """Run data is not JSON-serialisable (or not a JSON object), or does not fit the
    workflow's input model."""


class CodecError(DataError):
    """Data stored through a codec (``Engine(codec=...)``) cannot be read: this reader has no
    codec, or one that cannot decode it; or a codec gave what cannot be stored."""


class InvalidId(TreadleError, ValueError):
    """A run id, workflow name, signal or approval name or schedule id breaks the id rule."""

    def __init__(self, message: str, *, value: object, what: str) -> None:
        super().__init__(message)
        self.value = value
        self.what = what


class WrongEventLoop(TreadleError, RuntimeError):
    """An engine was used from an event loop (or thread) other than the one it was opened on,
    or opened a second time while open; or a :class:`SyncEngine` was called from its own event
    loop (an ``async`` step), where waiting for the loop would wait forever."""


class EngineNotOpen(TreadleError, RuntimeError):
    """An engine (or a :class:`SyncEngine`) was called before it was opened or after it was
    closed; the message says how to open it."""


class NonRetryableError(TreadleError):
    """Raise this (or a subclass) from a step to fail it at once, without retries."""


class StepTimeout(TreadleError, TimeoutError):
    """One attempt of a step ran over its ``timeout``."""

    def __init__(self, step: str, seconds: float) -> None:
        super().__init__(f"step {step!r} ran over its timeout of {seconds:g}s")
        self.step = step


class SubWorkflowFailed(TreadleError):
    """A child run started by ``sub_workflow`` ended FAILED or CANCELLED."""

    def __init__(self, step: str, child_id: str, status: str, error: str | None) -> None:
        super().__init__(f"sub-workflow {step!r} (run {child_id!r}) ended {status}: {error}")
        self.step = step
        self.child_id = child_id


class DefinitionMismatch(TreadleError):
    """A run's recorded position does not exist in the workflow definition it was to go on
    with (a migration refused, or a run held by an ``auto_upgrade``): ``reasons`` says why."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or [message]


class LeaseLost(TreadleError):
    """This engine no longer owns the run (another worker took it over); its writes are fenced."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"lease on run {run_id!r} was lost; this worker's write was refused")
        self.run_id = run_id


class PersistenceError(TreadleError):
    """The database failed; the driver's error is kept as ``__cause__``."""


class SchemaVersionError(PersistenceError):
    """The database schema is older or newer than this version of treadle."""
