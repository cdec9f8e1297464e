"""POST /orders/ starts the durable workflow; GET /orders/<workflow_id>/ shows it."""

import json
from contextlib import nullcontext
from typing import Any, Dict

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from dbos import DBOS, SetWorkflowID

from .models import Order
from .workflows import place_order


@csrf_exempt  # a JSON API for curl; a real app would authenticate instead
@require_POST
def place(request: HttpRequest) -> JsonResponse:
    try:
        data: Dict[str, Any] = json.loads(request.body or b"{}")
        item, quantity = str(data["item"]), int(data.get("quantity", 1))
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'send JSON like {"item": "book", "quantity": 2}'}, status=400)
    if not item or quantity < 1:
        return JsonResponse({"error": "item must be non-empty and quantity at least 1"}, status=400)
    # The same Idempotency-Key always means the same workflow: a retried
    # request returns the first one's ID and places no second order.
    key = request.headers.get("Idempotency-Key")
    with SetWorkflowID(key) if key else nullcontext():
        handle = DBOS.start_workflow(place_order, item, quantity)
    return JsonResponse({"workflow_id": handle.workflow_id}, status=202)


@require_GET
def status(request: HttpRequest, workflow_id: str) -> JsonResponse:
    recorded = DBOS.get_workflow_status(workflow_id)
    if recorded is None:
        return JsonResponse({"error": f"no workflow {workflow_id}"}, status=404)
    order = Order.objects.filter(workflow_id=workflow_id).first()
    return JsonResponse({
        "workflow_id": workflow_id,
        "status": recorded.status,
        "result": recorded.output,
        "error": str(recorded.error) if recorded.error is not None else None,
        "order": order.as_dict() if order is not None else None,
    })
