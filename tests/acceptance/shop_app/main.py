"""The shop: a FastAPI app whose checkout is a DBOS workflow.

Run it as a user would, once the databases are migrated (``dbos migrate`` in
this folder, which also runs ``alembic upgrade head``)::

    DBOS_SYSTEM_DATABASE_URL=... APP_DATABASE_URL=... SHOP_PAYMENTS_LOG=payments.log \\
        python -m uvicorn shop_app.main:app --app-dir ..

A checkout reserves stock and creates the order in one transaction, takes
the payment (a step; the "provider" appends a line to SHOP_PAYMENTS_LOG),
then waits for the customer's decision. Confirmed, the order is marked paid;
declined (or never answered), the stock goes back. Kill the server while an
order waits: when it starts again, the order carries on from its wait.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from fastapi import FastAPI, HTTPException

from dbos import DBOS, DBOSConfig, SQLAlchemyDatasource

from .models import Order, Product

STAGE_EVENT = "stage"
DECISION_TOPIC = "decision"
# How long an order waits for its customer before the stock goes back.
DECISION_TIMEOUT_S = 3600

app = FastAPI()
config: DBOSConfig = {
    "name": "shop",
    "system_database_url": os.environ["DBOS_SYSTEM_DATABASE_URL"],
}
DBOS(fastapi=app, config=config)
ds = SQLAlchemyDatasource.create(os.environ["APP_DATABASE_URL"])


# ----------------------------------------------------------------------
# Transactions on the shop's database and the payment step
# ----------------------------------------------------------------------


@ds.transaction()
def reserve(order_id: str, product_id: int, quantity: int) -> Optional[int]:
    """Take the stock and create the order; the amount to charge, or None if out of stock."""
    session = ds.sql_session()
    product = session.get(Product, product_id)
    if product is None or product.inventory < quantity:
        return None
    product.inventory -= quantity
    session.add(Order(order_id=order_id, product_id=product_id, quantity=quantity, status="RESERVED"))
    return product.price_cents * quantity


@ds.transaction()
def mark_paid(order_id: str, payment_ref: str) -> str:
    order = ds.sql_session().get(Order, order_id)
    order.status = "PAID"
    order.payment_ref = payment_ref
    return order.status


@ds.transaction()
def release(order_id: str) -> int:
    """Put the order's stock back and cancel it; the product's inventory afterwards."""
    session = ds.sql_session()
    order = session.get(Order, order_id)
    product = session.get(Product, order.product_id)
    product.inventory += order.quantity
    order.status = "CANCELLED"
    return product.inventory


@ds.transaction(isolation_level="READ COMMITTED")
def order_row(order_id: str) -> Optional[Dict[str, Any]]:
    order = ds.sql_session().get(Order, order_id)
    if order is None:
        return None
    return {"order_id": order.order_id, "product_id": order.product_id, "quantity": order.quantity,
            "status": order.status, "payment_ref": order.payment_ref}


@ds.transaction(isolation_level="READ COMMITTED")
def product_row(product_id: int) -> Optional[Dict[str, Any]]:
    product = ds.sql_session().get(Product, product_id)
    if product is None:
        return None
    return {"product_id": product.product_id, "name": product.name, "inventory": product.inventory}


@DBOS.step()
def charge(order_id: str, amount_cents: int) -> str:
    """Charge the customer. The "provider" keeps a ledger: one line per charge made."""
    payment_ref = f"pay-{order_id}"
    with open(os.environ["SHOP_PAYMENTS_LOG"], "a", encoding="utf-8") as ledger:
        ledger.write(f"{payment_ref} {amount_cents}\n")
    return payment_ref


# ----------------------------------------------------------------------
# The checkout workflow
# ----------------------------------------------------------------------


@DBOS.workflow()
def checkout(product_id: int, quantity: int) -> str:
    order_id = DBOS.workflow_id
    assert order_id is not None
    amount = reserve(order_id, product_id, quantity)
    if amount is None:
        DBOS.set_event(STAGE_EVENT, "out_of_stock")
        return "OUT_OF_STOCK"
    payment_ref = charge(order_id, amount)
    DBOS.set_event(STAGE_EVENT, "awaiting_decision")
    decision = DBOS.recv(DECISION_TOPIC, timeout_seconds=DECISION_TIMEOUT_S)
    if decision != "confirm":
        release(order_id)
        DBOS.set_event(STAGE_EVENT, "cancelled")
        return "CANCELLED"
    status = mark_paid(order_id, payment_ref)
    DBOS.set_event(STAGE_EVENT, "paid")
    return status


# ----------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------


@app.post("/checkout/{product_id}")
def start_checkout(product_id: int, quantity: int = 1) -> Dict[str, str]:
    """Start a checkout; the order's ID is the workflow's (send ``dbos-idempotency-key`` to choose it)."""
    handle = DBOS.start_workflow(checkout, product_id, quantity)
    return {"order_id": handle.workflow_id}


@app.post("/orders/{order_id}/{decision}")
def decide(order_id: str, decision: str) -> Dict[str, str]:
    if decision not in ("confirm", "decline"):
        raise HTTPException(status_code=404, detail=f"unknown decision {decision!r}")
    DBOS.send(order_id, decision, DECISION_TOPIC)
    return {"order_id": order_id, "sent": decision}


@app.get("/orders/{order_id}/stage")
def stage(order_id: str, timeout_s: float = 30) -> Dict[str, Any]:
    """How far the checkout got; waits up to ``timeout_s`` for its first stage."""
    return {"order_id": order_id, "stage": DBOS.get_event(order_id, STAGE_EVENT, timeout_seconds=timeout_s)}


@app.get("/orders/{order_id}/result")
def result(order_id: str) -> Dict[str, Any]:
    """Waits for the checkout to finish and returns its outcome."""
    return {"order_id": order_id, "result": DBOS.retrieve_workflow(order_id).get_result()}


@app.get("/orders/{order_id}")
def get_order(order_id: str) -> Dict[str, Any]:
    order = order_row(order_id)
    status = DBOS.get_workflow_status(order_id)
    if order is None and status is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id!r}")
    return {"order": order, "workflow_status": status.status if status else None}


@app.get("/products/{product_id}")
def get_product(product_id: int) -> Dict[str, Any]:
    product = product_row(product_id)
    if product is None:
        raise HTTPException(status_code=404, detail=f"no product {product_id}")
    return product
