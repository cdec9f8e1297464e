"""The FastAPI integration, through the example app and small apps of its own.

``with TestClient(app)`` runs the app's lifespan, so DBOS launches and is
destroyed as under a real server; what the workflows did is read back from
both databases over the test's own connections.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, AsyncIterator, Dict, Iterator, List

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from dbos import DBOS, DBOSConfig
from dbos import _runtime as runtime
from dbos.contrib.fastapi import current_request
from dbos._engine.engine import peek_engine
from dbos.error import DBOSException, DBOSInitializationError, DBOSNotAuthorizedError
from tests.integration.web_support import (
    app_config,
    drop_app_db,
    greeting_rows,
    load_example,
    new_app_db_url,
    recorded_status,
    workflow_count,
)


@pytest.fixture
def example() -> Iterator[ModuleType]:
    yield from load_example("fastapi_app.py")


@pytest.fixture
def app_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    url = new_app_db_url(backend, tmp_path)
    yield url
    drop_app_db(url)


@pytest.fixture
def app(example: ModuleType, migrated_sys_db_url: str, app_db_url: str) -> FastAPI:
    created: FastAPI = example.create_app(app_config(migrated_sys_db_url, app_db_url))
    return created


def post_greeting(client: TestClient, name: str, **headers: str) -> Dict[str, Any]:
    response = client.post("/greetings", json={"name": name}, headers=headers)
    assert response.status_code == 202, response.text
    body: Dict[str, Any] = response.json()
    return body


# ----------------------------------------------------------------------
# The example app
# ----------------------------------------------------------------------


def test_post_runs_a_workflow_that_writes_through_the_orm(
    app: FastAPI, sys_db_url: str, app_db_url: str
) -> None:
    assert peek_engine() is None
    with TestClient(app) as client:
        assert peek_engine() is not None  # launched by the lifespan
        started = post_greeting(client, "Ada", **{"x-request-id": "req-1"})
        workflow_id = started["workflow_id"]
        result = DBOS.retrieve_workflow(workflow_id).get_result()
        assert result == {"id": 1, "message": "Hello, Ada!"}
        shown = client.get(f"/greetings/{workflow_id}").json()
        assert shown == {"workflow_id": workflow_id, "status": "SUCCESS", "result": result}
        assert client.get("/greetings/no-such-workflow").status_code == 404
        assert client.post("/greetings", json={"name": ""}).status_code == 422
    assert greeting_rows(app_db_url) == [("Ada", "Hello, Ada!", "req-1")]
    assert recorded_status(sys_db_url, workflow_id) == ("SUCCESS", "greet")


def test_shutdown_destroys_dbos(app: FastAPI) -> None:
    with TestClient(app):
        assert DBOS.config is not None
    assert DBOS.config is None and runtime.current() is None
    assert peek_engine() is None


def test_idempotency_key_names_the_workflow_and_a_repeat_runs_nothing(
    app: FastAPI, sys_db_url: str, app_db_url: str
) -> None:
    key = f"order-{uuid.uuid4().hex[:8]}"
    with TestClient(app) as client:
        assert post_greeting(client, "Ada", **{"dbos-idempotency-key": key})["workflow_id"] == key
        DBOS.retrieve_workflow(key).get_result()
        assert post_greeting(client, "Ada", **{"dbos-idempotency-key": key})["workflow_id"] == key
        assert DBOS.retrieve_workflow(key).get_result() == {"id": 1, "message": "Hello, Ada!"}
        later = post_greeting(client, "Bob")  # the key belonged to those requests only
        assert later["workflow_id"] != key
        DBOS.retrieve_workflow(later["workflow_id"]).get_result()
        assert workflow_count(sys_db_url) == 2
    assert [row[0] for row in greeting_rows(app_db_url)] == ["Ada", "Bob"]


def test_request_id_comes_from_the_header_or_is_a_new_uuid(app: FastAPI, app_db_url: str) -> None:
    with TestClient(app) as client:
        named = post_greeting(client, "Ada", **{"x-request-id": "req-42"})
        unnamed = post_greeting(client, "Bob")
        for started in (named, unnamed):
            DBOS.retrieve_workflow(started["workflow_id"]).get_result()
    assert named["request_id"] == "req-42"
    assert str(uuid.UUID(unnamed["request_id"])) == unnamed["request_id"]
    # The two workflows ran concurrently: the rows may be in either order.
    assert {(row[0], row[2]) for row in greeting_rows(app_db_url)} == {
        ("Ada", "req-42"), ("Bob", unnamed["request_id"])}


# ----------------------------------------------------------------------
# The request context in async and sync endpoints
# ----------------------------------------------------------------------


def test_async_endpoint_sees_the_request_and_the_key(config: DBOSConfig) -> None:
    @DBOS.workflow()
    async def echo(n: int) -> int:
        return n

    app = FastAPI()

    @app.post("/two")
    async def two() -> Dict[str, Any]:
        info = current_request()
        assert info is not None
        first = await DBOS.start_workflow_async(echo, 1)
        second = await DBOS.start_workflow_async(echo, 2)
        results = [await first.get_result(), await second.get_result()]
        return {"ids": [first.workflow_id, second.workflow_id], "results": results,
                "request": [info.request_id, info.method, info.url]}

    DBOS(config=config, fastapi=app)
    with TestClient(app) as client:
        headers = {"dbos-idempotency-key": "k-async", "x-request-id": "req-9"}
        body = client.post("/two?x=1", headers=headers).json()
    assert body["ids"][0] == "k-async" and body["ids"][1] != "k-async"  # the first only
    assert body["results"] == [1, 2]
    assert body["request"] == ["req-9", "POST", "http://testserver/two?x=1"]


def test_sync_endpoint_runs_in_a_thread_with_the_request_context(config: DBOSConfig) -> None:
    @DBOS.workflow()
    def echo(n: int) -> int:
        return n

    app = FastAPI()

    @app.post("/two")
    def two() -> Dict[str, Any]:
        info = current_request()
        first = DBOS.start_workflow(echo, 1)
        second = DBOS.start_workflow(echo, 2)
        return {"ids": [first.workflow_id, second.workflow_id],
                "request_id": info.request_id if info is not None else None}

    DBOS(config=config, fastapi=app)
    with TestClient(app) as client:
        body = client.post("/two", headers={"dbos-idempotency-key": "k-sync",
                                            "x-request-id": "req-10"}).json()
        assert body["ids"][0] == "k-sync" and body["ids"][1] != "k-sync"
        assert [DBOS.retrieve_workflow(i).get_result() for i in body["ids"]] == [1, 2]
    assert body["request_id"] == "req-10"


# ----------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------


def test_dbos_exceptions_become_json_responses(config: DBOSConfig) -> None:
    app = FastAPI()

    @app.get("/forbidden")
    def forbidden() -> None:
        raise DBOSNotAuthorizedError("only admins may look")

    @app.get("/missing")
    async def missing() -> None:
        await DBOS.retrieve_workflow_async("no-such-workflow")

    @app.get("/plain")
    def plain() -> None:
        raise DBOSException("something broke")

    DBOS(config=config, fastapi=app)
    with TestClient(app) as client:
        forbidden_response = client.get("/forbidden")
        missing_response = client.get("/missing")
        plain_response = client.get("/plain")
    assert forbidden_response.status_code == 403
    assert forbidden_response.json() == {"message": "only admins may look",
                                         "dbos_error_code": "8",
                                         "dbos_error": "DBOSNotAuthorizedError"}
    assert missing_response.status_code == 500
    assert missing_response.json()["dbos_error"] == "DBOSNonExistentWorkflowError"
    assert missing_response.json()["dbos_error_code"] == "5"
    assert "no-such-workflow" in missing_response.json()["message"]
    assert plain_response.status_code == 500
    assert plain_response.json() == {"message": "something broke", "dbos_error_code": "None",
                                     "dbos_error": "DBOSException"}


def test_a_fastapi_argument_that_is_not_a_fastapi_app_fails_construction(
    config: DBOSConfig,
) -> None:
    with pytest.raises(DBOSInitializationError, match="fastapi.FastAPI"):
        DBOS(config=config, fastapi=object())
    assert runtime.current() is None


# ----------------------------------------------------------------------
# Lifespans
# ----------------------------------------------------------------------


def test_the_apps_own_lifespan_still_runs_around_dbos(config: DBOSConfig) -> None:
    events: List[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Dict[str, Any]]:
        events.append(f"startup, launched={peek_engine() is not None}")
        yield {"greeting": "hi"}
        events.append(f"shutdown, launched={peek_engine() is not None}")

    router_events: List[str] = []

    @asynccontextmanager
    async def router_lifespan(app: Any) -> AsyncIterator[None]:
        router_events.append(f"router startup, launched={peek_engine() is not None}")
        yield

    app = FastAPI(lifespan=lifespan)
    DBOS(config=config, fastapi=app)
    router = APIRouter(lifespan=router_lifespan)

    @router.get("/state")
    def state(request: Request) -> str:
        return str(request.state.greeting)

    app.include_router(router)  # merged inside DBOS's wrapper
    with TestClient(app) as client:
        assert client.get("/state").json() == "hi"  # the lifespan's state got through
        assert peek_engine() is not None
    # DBOS launches after the app's startup (as on lifespan.startup.complete)
    # and is destroyed after its shutdown, which may still use it.
    assert events == ["startup, launched=False", "shutdown, launched=True"]
    assert router_events == ["router startup, launched=True"]
    assert DBOS.config is None


def test_a_launch_in_the_apps_lifespan_is_left_alone(
    config: DBOSConfig, caplog: pytest.LogCaptureFixture
) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        DBOS.launch()  # the pattern DBOS's docs recommend
        yield

    app = FastAPI(lifespan=lifespan)
    DBOS(config=config, fastapi=app)
    with caplog.at_level(logging.WARNING, logger="dbos"):
        with TestClient(app):
            assert peek_engine() is not None
    assert not [r for r in caplog.records if "already launched" in r.getMessage()]
    assert DBOS.config is None
