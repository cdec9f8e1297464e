"""Which requests the admin server refuses as coming from another site's page."""

from __future__ import annotations

from email.message import Message
from typing import Dict

import pytest

from dbos._ops.admin_json import HTTPError
from dbos._ops.admin_origin import check_binding, check_change, check_host, check_origin, check_token, is_loopback
from dbos.error import DBOSConfigError


def headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "app.localhost", "127.0.0.1", "127.9.9.9",
                                  "::1", "[::1]"])
def test_loopback_names_and_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "example.com", "localhost.example.com", "", "::"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("fields", [
    {"Host": "evil.example:3001"}, {"Host": "evil.example"}, {"Host": "10.0.0.1:3001"}, {"Host": "[bad"},
])
def test_a_loopback_server_refuses_a_host_header_naming_another_host(fields: Dict[str, str]) -> None:
    with pytest.raises(HTTPError) as refused:
        check_host(headers(**fields), "127.0.0.1")
    assert refused.value.status == 403 and fields["Host"] in refused.value.message


def test_a_server_on_every_interface_takes_any_host_and_a_request_without_host_passes() -> None:
    check_host(headers(Host="app.example:3001"), "0.0.0.0")
    check_host(headers(), "127.0.0.1")  # HTTP/1.0 needs no Host
    check_host(headers(Host="localhost:3001"), "::1")


@pytest.mark.parametrize("fields", [
    {"Origin": "http://evil.example", "Host": "127.0.0.1:3001"},
    {"Origin": "http://127.0.0.1:3002", "Host": "127.0.0.1:3001"},
    {"Origin": "http://localhost:3001", "Host": "127.0.0.1:3001"},  # another origin, same machine
    {"Origin": "null", "Host": "127.0.0.1:3001"},
    {"Origin": "http://127.0.0.1:3001"},  # no Host to compare with
    {"Sec_Fetch_Site": "cross-site"},
    {"Sec_Fetch_Site": "same-site"},
])
def test_a_change_from_another_origin_is_refused(fields: Dict[str, str]) -> None:
    with pytest.raises(HTTPError) as refused:
        check_origin(headers(**fields))
    assert refused.value.status == 403 and "Refused" in refused.value.message


@pytest.mark.parametrize("fields", [
    {},  # a script: no browser headers at all
    {"Origin": "http://127.0.0.1:3001", "Host": "127.0.0.1:3001"},
    {"Origin": "HTTP://LOCALHOST:3001", "Host": "localhost:3001"},
    {"Sec_Fetch_Site": "same-origin"},
    {"Sec_Fetch_Site": "none"},  # an address the user typed
])
def test_a_change_from_its_own_origin_or_a_script_passes(fields: Dict[str, str]) -> None:
    check_origin(headers(**fields))


OWN = {"Origin": "http://127.0.0.1:3001", "Host": "127.0.0.1:3001"}


@pytest.mark.parametrize("fields", [
    {**OWN, "Content_Type": "text/plain"},  # a form of the server's own origin
    {**OWN, "Content_Type": "application/x-www-form-urlencoded"},
    {"Sec_Fetch_Site": "same-origin"},
])
def test_a_browser_change_without_a_header_no_form_can_send_is_refused(fields: Dict[str, str]) -> None:
    with pytest.raises(HTTPError) as refused:
        check_change(headers(**fields), "POST")
    assert refused.value.status == 403 and "X-DBOS-Request" in refused.value.message


@pytest.mark.parametrize("fields", [
    {}, {"Content_Type": "text/plain"},  # scripts
    {**OWN, "X_DBOS_Request": "1"}, {**OWN, "Content_Type": "application/json; charset=utf-8"},
])
def test_a_script_or_a_browser_change_with_the_header_passes(fields: Dict[str, str]) -> None:
    check_change(headers(**fields), "POST")


@pytest.mark.parametrize("fields", [{"Sec_Fetch_Site": "none"}, {"Referer": "http://127.0.0.1:3001/"}, OWN])
def test_a_change_on_get_is_for_scripts_only(fields: Dict[str, str]) -> None:
    with pytest.raises(HTTPError, match="POST /deactivate"):
        check_change(headers(**fields), "GET")
    check_change(headers(), "GET")


def test_the_token_is_a_bearer_token() -> None:
    token = "0123456789abcdef-token"
    check_token(headers(), None)  # none configured: nothing to check
    check_token(headers(Authorization=f"Bearer {token}"), token)
    check_token(headers(Authorization=f"bearer  {token} "), token)
    for given in ("", token, f"Bearer {token}x", f"Bearer {token[:-1]}", f"Basic {token}", "Bearer"):
        with pytest.raises(HTTPError) as refused:
            check_token(headers(Authorization=given), token)
        assert refused.value.status == 401 and refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_server_off_loopback_needs_a_long_enough_token() -> None:
    check_binding("127.0.0.1", None)
    check_binding("0.0.0.0", "0123456789abcdef")
    for host, token in (("0.0.0.0", None), ("10.1.2.3", None), ("::", None), ("127.0.0.1", "short")):
        with pytest.raises(DBOSConfigError, match="admin_token"):
            check_binding(host, token)
