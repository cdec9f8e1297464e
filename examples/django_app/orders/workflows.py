"""The durable order workflow.

DBOS imports every installed app's ``workflows`` module before it launches,
so the web server and ``manage.py dbos_worker`` know the same workflows and
either can recover what the other left unfinished.
"""

from typing import Any, Dict

from dbos import DBOS

from .models import Order

PRICE_CENTS = 1250


@DBOS.transaction()
def create_order(item: str, quantity: int) -> int:
    # Runs in a transaction on Django's connection; DBOS records the result
    # in the same transaction, so a crash after the commit never creates a
    # second order.
    order = Order.objects.create(item=item, quantity=quantity, workflow_id=DBOS.workflow_id)
    return int(order.pk)


@DBOS.step()
def charge_card(order_id: int, quantity: int) -> str:
    # Stands in for a payment API call: once it succeeds, its result is
    # recorded and a recovered workflow never charges again.
    DBOS.logger.info(f"Charging {quantity * PRICE_CENTS} cents for order {order_id}")
    return f"receipt-{order_id}-{quantity * PRICE_CENTS}"


@DBOS.transaction()
def mark_paid(order_id: int, receipt: str) -> None:
    Order.objects.filter(pk=order_id).update(status=Order.PAID, receipt=receipt)


@DBOS.workflow()
def place_order(item: str, quantity: int) -> Dict[str, Any]:
    order_id = create_order(item, quantity)
    receipt = charge_card(order_id, quantity)
    mark_paid(order_id, receipt)
    return {"order_id": order_id, "receipt": receipt}
