"""The shop's tables, as SQLAlchemy ORM classes.

The alembic revisions in ``migrations/versions`` create these tables; the
models only describe them (nothing here calls ``create_all``).
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    price_cents: Mapped[int] = mapped_column(Integer)
    inventory: Mapped[int] = mapped_column(Integer)


class Order(Base):
    __tablename__ = "orders"

    # The checkout workflow's ID: one order per workflow.
    order_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.product_id"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    # Added by the second revision: the payment provider's reference.
    payment_ref: Mapped[Optional[str]] = mapped_column(String(100), nullable=True)
