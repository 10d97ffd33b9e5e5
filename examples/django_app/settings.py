"""Settings of the Django example: an API with no models, so no database of Django's own."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []  # a JSON API without cookies: no sessions, no CSRF middleware
ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

TREADLE_DB = os.environ.get("TREADLE_DB", "sqlite:///treadle.db")
"""Where the runs are: the database that the ``treadle worker`` processes use."""
