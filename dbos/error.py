"""Every exception the library raises.

``DBOSException`` is the one base class for failures a user may handle;
``DBOSBaseException`` derives from ``BaseException`` for the few control-flow
signals that user code must not swallow with a bare ``except Exception``.
Each class pickles, because recorded errors are checkpointed.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, List, Optional


class DBOSErrorCode(IntEnum):
    ConflictingIDError = 1
    RecoveryError = 2
    InitializationError = 3
    WorkflowFunctionNotFound = 4
    NonExistentWorkflowError = 5
    MaxRecoveryAttemptsExceeded = 6
    MaxStepRetriesExceeded = 7
    NotAuthorized = 8
    ConflictingWorkflowError = 9
    WorkflowCancelled = 10
    UnexpectedStep = 11
    QueueDeduplicated = 12
    AwaitedWorkflowCancelled = 13
    AwaitedWorkflowMaxRecoveryAttemptsExceeded = 14
    PatchNondeterminism = 15
    StreamTimeout = 16
    StreamNondeterminism = 17
    StepTimeout = 18
    ConflictingRegistrationError = 25
    SystemDatabaseError = 40
    NotLaunched = 41
    SerializationError = 42
    RecordedError = 43


def _render(message: str, code: Optional[int]) -> str:
    if code is None:
        return f"DBOS Error: {message}"
    return f"DBOS Error {int(code)}: {message}"


class DBOSException(Exception):
    """Base class of every error a DBOS application may want to handle."""

    status_code: Optional[int] = None

    def __init__(self, message: str, dbos_error_code: Optional[int] = None) -> None:
        self.message = message
        self.dbos_error_code = dbos_error_code
        super().__init__(message)

    def __str__(self) -> str:
        return _render(self.message, self.dbos_error_code)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.__dict__.copy(), self.args))


class DBOSBaseException(BaseException):
    """Control-flow signal that ordinary ``except Exception`` must not catch."""

    status_code: Optional[int] = None

    def __init__(self, message: str, dbos_error_code: Optional[int] = None) -> None:
        self.message = message
        self.dbos_error_code = dbos_error_code
        super().__init__(message)

    def __str__(self) -> str:
        return _render(self.message, self.dbos_error_code)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.__dict__.copy(), self.args))


def _rebuild(cls: "type[BaseException]", state: dict[str, Any], args: tuple[Any, ...]) -> BaseException:
    # Subclasses take different constructor arguments; rebuilding from the
    # instance dictionary avoids guessing them when a recorded error is loaded.
    exc: BaseException = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class DBOSWorkflowConflictIDError(DBOSBaseException):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"Conflicting workflow ID {workflow_id}",
            DBOSErrorCode.ConflictingIDError,
        )
        self.workflow_id = workflow_id


class DBOSRecoveryError(DBOSException):
    def __init__(self, workflow_id: str, message: Optional[str] = None) -> None:
        super().__init__(
            f"Recovery error for workflow ID {workflow_id}: {message}",
            DBOSErrorCode.RecoveryError,
        )
        self.workflow_id = workflow_id


class DBOSInitializationError(DBOSException):
    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.InitializationError)


class DBOSConfigError(DBOSInitializationError):
    """The configuration breaks a rule; ``path`` names the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        where = path or "(top level)"
        super().__init__(f"Invalid DBOS configuration at '{where}': {problem}")
        self.path = path
        self.problem = problem


class DBOSMigrationRequiredError(DBOSInitializationError):
    """The system database is behind the code and cannot be migrated from here.

    At launch that is because ``run_migrations`` is false; for a
    ``DBOSClient``, because its database role may not create or migrate the
    database (``reason`` then says so). Either way ``command`` migrates it.
    """

    def __init__(self, current: int, required: int, command: str, *,
                 reason: str = "run_migrations is false", then: str = "then launch again") -> None:
        super().__init__(
            f"The system database schema is at version {current} but this "
            f"version of DBOS needs {required}, and {reason}. "
            f"Run `{command}` to migrate it, {then}."
        )
        self.current = current
        self.required = required
        self.command = command


class DBOSSystemDatabaseError(DBOSException):
    """A database operation failed; wraps the driver's error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.SystemDatabaseError)


# One subclass per cause a user can act on; each message says which database,
# which operation, what went wrong and what to do. Catching
# ``DBOSSystemDatabaseError`` still catches them all.


class DBOSDiskFullError(DBOSSystemDatabaseError):
    """The disk holding the system database is full: nothing can be written."""


class DBOSReadOnlyDatabaseError(DBOSSystemDatabaseError):
    """The system database may be read but not written (a read-only file or a standby server)."""


class DBOSDatabaseConnectionError(DBOSSystemDatabaseError):
    """No connection to the system database could be opened, or one was lost."""


class DBOSDatabaseAuthenticationError(DBOSDatabaseConnectionError):
    """The database server refused the user or password."""


class DBOSTooManyConnectionsError(DBOSSystemDatabaseError):
    """The server (or this process's pool) has no connection left to give."""


class DBOSDatabaseBusyError(DBOSSystemDatabaseError):
    """A lock stayed held by another connection past the time limit."""


class DBOSDatabasePermissionError(DBOSSystemDatabaseError):
    """The database role, or the operating-system user, may not do this."""


class DBOSNotLaunchedError(DBOSException):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} before DBOS was launched: call DBOS.launch() first",
            DBOSErrorCode.NotLaunched,
        )


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    def __init__(self, workflow_id: str, message: Optional[str] = None) -> None:
        super().__init__(
            f"Workflow function not found for workflow ID {workflow_id}: {message}",
            DBOSErrorCode.WorkflowFunctionNotFound,
        )
        self.workflow_id = workflow_id


class DBOSNonExistentWorkflowError(DBOSException):
    def __init__(self, destination: str, destination_id: str) -> None:
        super().__init__(
            f"{destination} {destination_id} does not exist",
            DBOSErrorCode.NonExistentWorkflowError,
        )
        self.destination_id = destination_id


class MaxRecoveryAttemptsExceededError(DBOSException):
    def __init__(self, wf_id: str, max_retries: Optional[int] = None) -> None:
        super().__init__(
            f"Workflow {wf_id} has exceeded its maximum of {max_retries} "
            "execution or recovery attempts. Further attempts to execute or "
            "recover it will fail.",
            DBOSErrorCode.MaxRecoveryAttemptsExceeded,
        )
        self.workflow_id = wf_id
        self.max_retries = max_retries


class DBOSMaxStepRetriesExceeded(DBOSException):
    def __init__(
        self, step_name: str, max_retries: int, errors: Optional[List[Exception]] = None
    ) -> None:
        super().__init__(
            f"Step {step_name} has exceeded its maximum of {max_retries} retries",
            DBOSErrorCode.MaxStepRetriesExceeded,
        )
        self.step_name = step_name
        self.max_retries = max_retries
        self.errors = list(errors or [])


class DBOSNotAuthorizedError(DBOSException):
    status_code = 403

    def __init__(self, msg: str) -> None:
        super().__init__(msg, DBOSErrorCode.NotAuthorized)


class DBOSConflictingWorkflowError(DBOSException):
    def __init__(self, workflow_id: str, message: Optional[str] = None) -> None:
        super().__init__(
            f"Conflicting workflow invocation with the same ID ({workflow_id}): {message}",
            DBOSErrorCode.ConflictingWorkflowError,
        )
        self.workflow_id = workflow_id


class DBOSWorkflowCancelledError(DBOSBaseException):
    def __init__(self, msg: str) -> None:
        super().__init__(msg, DBOSErrorCode.WorkflowCancelled)


class DBOSUnexpectedStepError(DBOSException):
    def __init__(
        self, workflow_id: str, step_id: int, expected_name: str, recorded_name: str
    ) -> None:
        super().__init__(
            f"During execution of workflow {workflow_id} step {step_id}, function "
            f"{recorded_name} was recorded when {expected_name} was expected. "
            "Check that your workflow is deterministic.",
            DBOSErrorCode.UnexpectedStep,
        )
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.expected_name = expected_name
        self.recorded_name = recorded_name


class DBOSPatchNondeterminismError(DBOSException):
    """A patch's answer could differ between executions of one workflow."""

    def __init__(self, workflow_id: str, patch_name: str, details: str) -> None:
        super().__init__(
            f"Cannot deterministically apply patch {patch_name} in workflow {workflow_id}: "
            f"{details}. Check that your workflow is deterministic.",
            DBOSErrorCode.PatchNondeterminism,
        )
        self.workflow_id = workflow_id
        self.patch_name = patch_name
        self.details = details


class DBOSQueueDeduplicatedError(DBOSException):
    def __init__(self, workflow_id: str, queue_name: str, deduplication_id: str) -> None:
        super().__init__(
            f"Workflow {workflow_id} was deduplicated: a workflow with "
            f"deduplication ID {deduplication_id} is already in queue {queue_name}",
            DBOSErrorCode.QueueDeduplicated,
        )
        self.workflow_id = workflow_id
        self.queue_name = queue_name
        self.deduplication_id = deduplication_id


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"Awaited workflow {workflow_id} was cancelled",
            DBOSErrorCode.AwaitedWorkflowCancelled,
        )
        self.workflow_id = workflow_id


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(DBOSException):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"Awaited workflow {workflow_id} exceeded its maximum recovery attempts",
            DBOSErrorCode.AwaitedWorkflowMaxRecoveryAttemptsExceeded,
        )
        self.workflow_id = workflow_id


class DBOSStreamTimeoutError(DBOSException):
    def __init__(
        self, workflow_id: str, key: str, timeout_seconds: Optional[float] = None
    ) -> None:
        # Without a timeout the stream ended before the offset asked for.
        why = (f"within {timeout_seconds} seconds" if timeout_seconds is not None
               else "before the stream ended")
        super().__init__(
            f"No value arrived on stream {key} of workflow {workflow_id} {why}",
            DBOSErrorCode.StreamTimeout,
        )
        self.workflow_id = workflow_id
        self.key = key
        self.timeout_seconds = timeout_seconds


class DBOSStreamNondeterminismError(DBOSException):
    def __init__(self, workflow_id: str, key: str) -> None:
        super().__init__(
            f"Workflow {workflow_id} read stream {key} while another of its stream reads was still "
            "in progress: which read records which value would depend on task scheduling, so a "
            "replay could differ. Read streams one at a time in workflow code, or from a step.",
            DBOSErrorCode.StreamNondeterminism,
        )
        self.workflow_id = workflow_id
        self.key = key


class DBOSStepTimeoutError(DBOSException):
    def __init__(self, step_name: str, timeout_seconds: float) -> None:
        super().__init__(
            f"Step {step_name} timed out after {timeout_seconds} seconds",
            DBOSErrorCode.StepTimeout,
        )
        self.step_name = step_name
        self.timeout_seconds = timeout_seconds


class DBOSConflictingRegistrationError(DBOSException):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"Operation (Name: {name}) is already registered with a conflicting function type",
            DBOSErrorCode.ConflictingRegistrationError,
        )
        self.name = name


class DBOSSerializationError(DBOSException):
    """A value cannot be serialized; ``what`` names it (an argument, an output)."""

    def __init__(self, what: str, reason: str, *, reading: bool = False) -> None:
        advice = ("It may have been written with another serializer: configure this process "
                  "(or DBOSClient) with the serializer of the application that wrote it") if reading \
            else "Pass values that pickle can store, or configure a serializer that handles them"
        super().__init__(
            f"Cannot {'deserialize' if reading else 'serialize'} {what}: {reason}. {advice}",
            DBOSErrorCode.SerializationError,
        )
        self.what = what
        self.reason = reason


class DBOSRecordedError(DBOSException):
    """Stands in for a recorded exception that could not be stored or restored."""

    def __init__(self, type_name: str, error_message: str) -> None:
        super().__init__(
            f"{type_name}: {error_message} (the original exception could not be "
            "pickled or unpickled, so it is returned as this DBOS error)",
            DBOSErrorCode.RecordedError,
        )
        self.type_name = type_name
        self.error_message = error_message


class DBOSInvalidArgumentError(DBOSException, ValueError):
    """An argument a DBOS function was given cannot be used; nothing was written.

    Also a ``ValueError``, which is what such a mistake is in plain Python.
    """

    def __init__(self, argument: str, value: Any, expected: str) -> None:
        super().__init__(f"Invalid {argument} {value!r}: {expected}")
        self.argument = argument
        self.value = value


class DBOSArgumentValidationError(DBOSException, ValueError):
    """A workflow's arguments, read from its row, failed its ``validate_args``;
    the workflow ends in ERROR without running. Also a ``ValueError``, as in
    DBOS Transact."""

    def __init__(self, workflow_name: str, problems: List[str]) -> None:
        super().__init__(
            f"Arguments of workflow {workflow_name} failed validation: {'; '.join(problems)}. "
            "The workflow did not run: enqueue it with arguments of the types its signature declares"
        )
        self.workflow_name = workflow_name
        self.problems = problems


class DBOSUnknownSerializationError(DBOSException):
    """A recorded value is marked with a format this process has no serializer for
    (another language's, or another configured serializer's)."""

    def __init__(self, serialization: str, configured: str) -> None:
        super().__init__(
            f"A recorded value is stored as {serialization!r}, which this process cannot read: it reads "
            f"its configured serializer's format ({configured!r}), 'portable_json' and 'py_pickle'. "
            "Configure the serializer that wrote it, or write it as portable JSON",
            DBOSErrorCode.SerializationError,
        )
        self.serialization = serialization
        self.configured = configured
