"""The two tables a datasource may record outputs in, and how each is laid out.

``transaction_outputs`` is what ``@DBOS.transaction`` has always used (the
application database's table in DBOS Transact 1.x); ``datasource_outputs``
is what a datasource made with ``create(...)`` uses, as in DBOS Transact 2.x.
Both are DBOS Transact's layouts, so a database it prepared is used as is.
Every statement on them is built by ``outputs.OutputsSQL`` from this
description alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

# The values a recorded outcome is made of; a layout stores some of them.
Outcome = Dict[str, object]


@dataclass(frozen=True)
class OutputsTable:
    name: str
    workflow_column: str
    step_column: str
    # Column definitions after the two key columns; {now_ms} is the backend's
    # expression for the current time in milliseconds.
    columns_ddl: str
    # (column, key into the Outcome) for each column an insert fills.
    inserted: Tuple[Tuple[str, str], ...]
    # A column missing from a table made by an older DBOS Transact, added
    # when found missing: (name, definition).
    late_column: Optional[Tuple[str, str]] = None
    index: Optional[str] = None

    @property
    def current_column(self) -> str:
        """The column whose presence says the table is there and up to date."""
        return self.late_column[0] if self.late_column else self.inserted[-1][0]


TRANSACTION_OUTPUTS = OutputsTable(
    name="transaction_outputs",
    workflow_column="workflow_uuid",
    step_column="function_id",
    columns_ddl=(
        "output TEXT, error TEXT, txn_id TEXT, txn_snapshot TEXT, executor_id TEXT, "
        "function_name TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL DEFAULT {now_ms}"
    ),
    inserted=(
        ("workflow_uuid", "workflow_id"), ("function_id", "step_id"), ("function_name", "name"),
        ("output", "output"), ("error", "error"), ("executor_id", "executor_id"),
        ("created_at", "created_at"), ("txn_id", "empty"), ("txn_snapshot", "empty"),
    ),
    late_column=("function_name", "TEXT NOT NULL DEFAULT ''"),
    index="transaction_outputs_created_at_index",
)

DATASOURCE_OUTPUTS = OutputsTable(
    name="datasource_outputs",
    workflow_column="workflow_id",
    step_column="step_id",
    columns_ddl="output TEXT, error TEXT, serialization TEXT, created_at BIGINT NOT NULL DEFAULT {now_ms}",
    inserted=(
        ("workflow_id", "workflow_id"), ("step_id", "step_id"), ("output", "output"),
        ("error", "error"), ("created_at", "created_at"), ("serialization", "serialization"),
    ),
)
