"""WSGI entry point; runserver and gunicorn build the application here.

DBOS's ``get_wsgi_application`` is Django's plus ``DBOS.launch()``, so DBOS
launches in each process that serves requests and in no other.
"""

import os

from dbos.contrib.django.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

application = get_wsgi_application()
