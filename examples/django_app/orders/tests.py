"""The shop end to end: HTTP through Django's test client, a launched DBOS, a real database.

``TransactionTestCase``, not ``TestCase``: the workflow runs on DBOS's threads,
each with its own connection, so the test's data must really be committed
(and a ``@DBOS.transaction`` refuses to run inside TestCase's open ``atomic``).
Run with ``python manage.py test orders``.
"""

from typing import Any, Dict

from django.test import TransactionTestCase

from dbos import DBOS
from dbos.contrib.django import launch

from .models import Order


class OrderWorkflowTests(TransactionTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # Now that the test database exists: DBOS's tables go there too.
        launch()

    @classmethod
    def tearDownClass(cls) -> None:
        # Closes DBOS's connections before Django drops the test database.
        DBOS.destroy()
        super().tearDownClass()

    def place(self, body: Dict[str, Any], **headers: str) -> Any:
        return self.client.post("/orders/", body, content_type="application/json", headers=headers)

    def test_an_order_is_placed_charged_and_paid(self) -> None:
        response = self.place({"item": "book", "quantity": 2})
        self.assertEqual(response.status_code, 202)
        workflow_id = response.json()["workflow_id"]

        result = DBOS.retrieve_workflow(workflow_id).get_result()

        order = Order.objects.get(workflow_id=workflow_id)
        self.assertEqual(result, {"order_id": order.pk, "receipt": f"receipt-{order.pk}-2500"})
        self.assertEqual((order.item, order.quantity, order.status, order.receipt),
                         ("book", 2, Order.PAID, result["receipt"]))
        shown = self.client.get(f"/orders/{workflow_id}/").json()
        self.assertEqual(shown["status"], "SUCCESS")
        self.assertEqual(shown["result"], result)
        self.assertEqual(shown["order"], order.as_dict())
        steps = [s["function_name"] for s in DBOS.list_workflow_steps(workflow_id)]
        self.assertEqual(steps, ["create_order", "charge_card", "mark_paid"])

    def test_a_repeated_idempotency_key_places_one_order(self) -> None:
        first = self.place({"item": "pen"}, **{"Idempotency-Key": "order-pen-1"})
        again = self.place({"item": "pen"}, **{"Idempotency-Key": "order-pen-1"})
        self.assertEqual(first.json(), {"workflow_id": "order-pen-1"})
        self.assertEqual(again.json(), {"workflow_id": "order-pen-1"})
        DBOS.retrieve_workflow("order-pen-1").get_result()
        self.assertEqual(Order.objects.filter(workflow_id="order-pen-1").count(), 1)

    def test_a_bad_order_is_refused_before_any_workflow_starts(self) -> None:
        response = self.place({"item": "book", "quantity": 0})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(DBOS.list_workflows(), [])

    def test_an_unknown_workflow_is_not_found(self) -> None:
        self.assertEqual(self.client.get("/orders/no-such-workflow/").status_code, 404)
