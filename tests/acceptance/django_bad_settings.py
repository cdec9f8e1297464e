"""The example shop's settings with a DBOS setting of the wrong type.

    python manage.py check --settings tests.acceptance.django_bad_settings
"""

from shop.settings import *  # type: ignore[import-not-found]  # noqa: F401,F403

DBOS = {"name": "django-example", "sys_db_pool_size": "many"}
