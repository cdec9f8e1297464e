"""Orders keep their payment reference; the catalogue's first products.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CATALOGUE = [
    {"product_id": 1, "name": "lamp", "price_cents": 2500, "inventory": 10},
    {"product_id": 2, "name": "desk", "price_cents": 12000, "inventory": 3},
]


def upgrade() -> None:
    op.add_column("orders", sa.Column("payment_ref", sa.String(100), nullable=True))
    products = sa.table(
        "products",
        sa.column("product_id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("price_cents", sa.Integer),
        sa.column("inventory", sa.Integer),
    )
    op.bulk_insert(products, CATALOGUE)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM products WHERE product_id IN (1, 2)"))
    with op.batch_alter_table("orders") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("payment_ref")
