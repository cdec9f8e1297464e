"""A small shop served by FastAPI and uvicorn, built only on the public ``dbos`` API.

It has the shape of a DBOS Transact demo app: its tables come from alembic
migrations, ``dbos migrate`` prepares the system database (and runs
``alembic upgrade head``, as ``dbos-config.yaml`` asks), and its checkout
workflow mixes ``@ds.transaction()`` functions of a ``SQLAlchemyDatasource``
with a step and a wait for a message. ``tests/acceptance/test_shop_app.py``
kills it mid-checkout and starts it again.
"""
