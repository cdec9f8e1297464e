"""ASGI entry point (uvicorn shop.asgi:application); launches DBOS like wsgi.py."""

import os

from dbos.contrib.django.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

application = get_asgi_application()
