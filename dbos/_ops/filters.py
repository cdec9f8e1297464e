"""The filters of ``list_workflows``, each checked before any query runs.

``DBOS``, ``DBOSClient``, the command line and the admin server all list
workflows through ``build_query``, so a misspelt filter or a bad status,
time or count is the same error everywhere.
"""

from __future__ import annotations

import inspect
import json
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union

from .._status import WorkflowStatusString
from .._sysdb.ids import check_workflow_ids
from .._sysdb.records import ListQuery
from ..error import DBOSException, DBOSInvalidArgumentError

StrOrList = Union[str, Sequence[str], None]
TimeArg = Union[str, datetime, None]

LIST_FILTERS = frozenset({
    "workflow_ids", "status", "start_time", "end_time", "completed_after", "completed_before",
    "dequeued_after", "dequeued_before", "name", "app_version", "forked_from",
    "parent_workflow_id", "user", "queue_name", "limit", "offset", "sort_desc",
    "workflow_id_prefix", "load_input", "load_output", "executor_id", "queues_only",
    "was_forked_from", "has_parent", "attributes", "schedule_name", "application_name",
})
QUEUED_FILTERS = LIST_FILTERS - {"queues_only", "was_forked_from", "schedule_name"}

# The filters in DBOS Transact's order, with their defaults (None unless here).
_FILTER_ORDER = (
    "workflow_ids", "status", "start_time", "end_time", "completed_after", "completed_before",
    "dequeued_after", "dequeued_before", "name", "app_version", "forked_from", "parent_workflow_id",
    "user", "queue_name", "limit", "offset", "sort_desc", "workflow_id_prefix", "load_input",
    "load_output", "executor_id", "queues_only", "was_forked_from", "has_parent", "attributes",
    "schedule_name", "application_name",
)
_FILTER_DEFAULTS = {"sort_desc": False, "load_input": True, "load_output": True, "queues_only": False}

F = TypeVar("F", bound=Callable[..., Any])


def with_filters(allowed: frozenset[str]) -> Callable[[F], F]:
    """Give a ``**filters`` listing method the signature its callers see in DBOS
    Transact (keyword-only filters), for ``help()``, IDEs and introspection;
    the filters themselves are checked at call time by ``check_filters``."""
    def decorate(func: F) -> F:
        first = next(iter(inspect.signature(func).parameters.values()))  # self or cls
        params = [first] + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                              default=_FILTER_DEFAULTS.get(name))
                            for name in _FILTER_ORDER if name in allowed]
        setattr(func, "__signature__", inspect.signature(func).replace(parameters=params))
        return func
    return decorate


def check_filters(what: str, filters: Dict[str, Any], allowed: frozenset[str]) -> Dict[str, Any]:
    """Refuse a misspelt filter rather than silently listing everything."""
    unknown = sorted(set(filters) - allowed)
    if unknown:
        raise TypeError(f"{what} got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"valid filters are {', '.join(sorted(allowed))}")
    return filters


_VALID_STATUSES = [s.value for s in WorkflowStatusString]
_TIME_FILTERS = ("start_time", "end_time", "completed_after", "completed_before",
                 "dequeued_after", "dequeued_before")
_LIST_FILTERS = ("workflow_ids", "name", "app_version", "forked_from", "parent_workflow_id",
                 "user", "queue_name", "executor_id", "schedule_name", "workflow_id_prefix")
_ID_FILTERS = frozenset({"workflow_ids", "forked_from", "parent_workflow_id", "workflow_id_prefix"})
# Both backends store counts and times as signed 64-bit integers.
MAX_BIGINT = 2**63 - 1


def as_list(value: StrOrList, what: str) -> Optional[List[str]]:
    """A filter given as one string or several, as a list (None: no filter)."""
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    for item in values:
        if not isinstance(item, str):
            raise DBOSException(f"{what} must be a string or a list of strings, got {item!r}")
    return values


def epoch_ms(value: TimeArg, what: str) -> Optional[int]:
    """An ISO-8601 time (or datetime) in epoch milliseconds; naive times are local."""
    if value is None:
        return None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        # OverflowError, OSError: a naive time too far from now for the local time zone.
        raise DBOSInvalidArgumentError(
            what, value, f"{what} must be an ISO-8601 time such as 2026-01-31T12:00:00"
        ) from None


def _statuses(value: StrOrList) -> Optional[List[str]]:
    statuses = as_list(value, "status")
    for status in statuses or []:
        if status not in _VALID_STATUSES:
            raise DBOSException(f"Unknown workflow status {status!r}: use one of {', '.join(_VALID_STATUSES)}")
    return statuses


def count(value: Optional[int], what: str) -> Optional[int]:
    """A limit or offset: None, or an integer from 0 to the largest the databases store."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BIGINT):
        raise DBOSInvalidArgumentError(what, value, f"{what} must be a non-negative integer of at most 2**63 - 1")
    return value


def build_query(own_app: Optional[str], filters: Dict[str, Any]) -> ListQuery:
    """A ``ListQuery`` from ``list_workflows`` keyword arguments, each checked."""
    query = ListQuery(
        status=_statuses(filters.get("status")),
        queues_only=bool(filters.get("queues_only")),
        was_forked_from=filters.get("was_forked_from"),
        has_parent=filters.get("has_parent"),
        limit=count(filters.get("limit"), "limit"),
        offset=count(filters.get("offset"), "offset"),
        sort_desc=bool(filters.get("sort_desc")),
        load_input=filters.get("load_input", True) is not False,
        load_output=filters.get("load_output", True) is not False,
    )
    for key in _LIST_FILTERS:
        values = as_list(filters.get(key), key)
        setattr(query, key, check_workflow_ids(values, key) if key in _ID_FILTERS and values else values)
    for key in _TIME_FILTERS:
        stamp = epoch_ms(filters.get(key), key)
        if stamp is not None:
            query.times[key] = stamp
    attributes = filters.get("attributes")
    if attributes is not None:
        query.attributes = _attributes_json(attributes)
    query.application_names = _owners(own_app, filters.get("application_name"), query.workflow_ids)
    return query


def _attributes_json(attributes: Any) -> str:
    if not isinstance(attributes, dict):
        raise DBOSException(f"attributes must be a dictionary, got {attributes!r}")
    try:
        return json.dumps(attributes)
    except (TypeError, ValueError) as exc:
        raise DBOSException(f"attributes must be JSON-serializable: {exc}") from None


def _owners(own_app: Optional[str], asked: StrOrList, ids: Optional[List[str]]) -> Optional[List[str]]:
    """Whose rows a listing shows: those asked for, else this app's; unclaimed rows always."""
    names = as_list(asked, "application_name")
    if names is not None:
        return names
    if ids is not None or own_app is None:
        return None  # lookups by ID are not scoped to an application
    return [own_app]
