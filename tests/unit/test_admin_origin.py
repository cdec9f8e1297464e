"""Which requests the admin server refuses as coming from another site's page."""

from __future__ import annotations

from email.message import Message
from typing import Dict

import pytest

from dbos._ops.admin_json import HTTPError
from dbos._ops.admin_origin import check_host, check_origin, is_loopback


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
