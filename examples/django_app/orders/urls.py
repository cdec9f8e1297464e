from django.urls import path

from . import views

urlpatterns = [
    path("", views.place, name="place-order"),
    path("<str:workflow_id>/", views.status, name="order-status"),
]
