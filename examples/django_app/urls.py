"""The order endpoints."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("orders", views.create_order),
    path("orders/<str:run_id>", views.get_order),
    path("orders/<str:run_id>/payment", views.pay_order),
    path("orders/<str:run_id>/cancel", views.cancel_order),
]
