from typing import Any, Dict

from django.db import models


class Order(models.Model):
    PLACED = "placed"
    PAID = "paid"

    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=10, default=PLACED)
    receipt = models.CharField(max_length=100, blank=True, default="")
    # Not unique on purpose: a transaction that ran twice would show as two rows.
    workflow_id = models.CharField(max_length=100, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "id": self.pk,
            "item": self.item,
            "quantity": self.quantity,
            "status": self.status,
            "receipt": self.receipt,
        }
