"""Which application datasource a configuration gets (no database is opened)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbos import DBAPIDatasource, PeeweeDatasource
from dbos._config import validate_config
from dbos._datasource import default_kind
from dbos._runtime import datasource_from_config
from dbos.error import DBOSConfigError


def test_a_users_datasource_is_used_and_left_open(tmp_path: Path) -> None:
    own = DBAPIDatasource(lambda: None, dialect="sqlite")
    assert datasource_from_config(own, f"sqlite:///{tmp_path}/app.sqlite") == (own, False)


def test_no_url_means_no_datasource() -> None:
    assert datasource_from_config(None, None) == (None, False)


def test_peewee_is_chosen_by_name(tmp_path: Path) -> None:
    datasource, owned = datasource_from_config("peewee", f"sqlite:///{tmp_path}/app.sqlite")
    assert isinstance(datasource, PeeweeDatasource) and owned
    datasource.close()


def test_the_default_is_sqlalchemy_where_installed(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    from dbos.contrib.sqlalchemy import SQLAlchemyDatasource

    assert default_kind() == "sqlalchemy"
    datasource, owned = datasource_from_config(None, f"sqlite:///{tmp_path}/app.sqlite")
    assert isinstance(datasource, SQLAlchemyDatasource) and owned
    datasource.close()


@pytest.mark.parametrize("config, message", [
    ({"name": "app", "application_datasource": "mongo", "application_database_url": "sqlite:///a.db"},
     "one of 'peewee', 'sqlalchemy', got 'mongo'"),
    ({"name": "app", "application_datasource": "peewee"}, "opens application_database_url, which is not set"),
    ({"name": "app", "application_datasource": 3}, "must be a dbos.Datasource"),
])
def test_bad_choices_name_the_field(config: Any, message: str) -> None:
    with pytest.raises(DBOSConfigError, match="application_datasource") as caught:
        validate_config(config)
    assert message in str(caught.value)
