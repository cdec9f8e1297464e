import pickle

import dbos
from dbos import error


def test_public_names_are_pinned() -> None:
    assert sorted(dbos.__all__) == sorted(
        [
            "ClientScheduleInput",
            "Debouncer",
            "DebouncerClient",
            "DuplicationPolicy",
            "ScheduleInput",
            "SetWorkflowAttributes",
            "WorkflowSchedule",
            "DBAPIDatasource",
            "DBOS",
            "DBOSClient",
            "DBOSConfig",
            "DBOSConfiguredInstance",
            "DBOSContextEnsure",
            "DBOSContextSetAuth",
            "DBOSPortableJSONSerializer",
            "Datasource",
            "DefaultSerializer",
            "EnqueueOptions",
            "PeeweeDatasource",
            "PortableWorkflowError",
            "PropagateOtelContext",
            "Queue",
            "QueueRateLimit",
            "AsyncSQLAlchemyDatasource",
            "SQLAlchemyDatasource",
            "SendMessage",
            "SetEnqueueOptions",
            "Serializer",
            "SetWorkflowID",
            "SetWorkflowTimeout",
            "StepInfo",
            "StepOptions",
            "StepStatus",
            "VersionInfo",
            "WorkflowHandle",
            "WorkflowHandleAsync",
            "WorkflowSerializationFormat",
            "WorkflowStatus",
            "WorkflowStatusString",
            "error",
            "make_pydantic_args_validator",
            "pydantic_args_validator",
            "run_dbos_database_migrations",
        ]
    )
    for name in dbos.__all__:
        assert hasattr(dbos, name), name


def test_errors_share_one_base_and_pickle() -> None:
    samples = [
        error.DBOSInitializationError("bad"),
        error.DBOSConfigError("database.migrate[0]", "must be a string"),
        error.DBOSMigrationRequiredError(0, 1, "dbos migrate"),
        error.DBOSNonExistentWorkflowError("workflow", "wf-1"),
        error.DBOSMaxStepRetriesExceeded("step", 3, [ValueError("x")]),
        error.DBOSUnexpectedStepError("wf", 2, "a", "b"),
        error.DBOSWorkflowCancelledError("cancelled"),
        error.DBOSWorkflowConflictIDError("wf"),
        error.DBOSPatchNondeterminismError("wf", "DBOS.patch-p", "asked twice"),
        error.DBOSArgumentValidationError("wf", ["argument 'n': not an int"]),
        error.DBOSUnknownSerializationError("js_superjson", "py_pickle"),
    ]
    for exc in samples:
        assert isinstance(exc, (error.DBOSException, error.DBOSBaseException))
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc)
        assert str(copy) == str(exc)
        assert copy.__dict__.keys() == exc.__dict__.keys()


def test_error_string_carries_code() -> None:
    exc = error.DBOSInitializationError("Invalid name")
    assert str(exc) == "DBOS Error 3: Invalid name"
    assert exc.dbos_error_code == 3
    assert str(error.DBOSException("plain")) == "DBOS Error: plain"


def test_private_error_module_alias() -> None:
    from dbos._error import DBOSException

    assert DBOSException is error.DBOSException
