"""Who may reach the admin server: nobody else's page, and, where a token
is configured, only who holds it.

The server has no login: on loopback, any page a local browser opens could
otherwise send it requests. Two checks keep such pages out. A Host header
naming another host means a page reached this server by DNS rebinding (its
name re-pointed at 127.0.0.1): refused on a loopback server, for every
request, since the page could read the answers. And a change asked from a
page of another origin (``Origin`` on a POST, ``Sec-Fetch-Site`` on any
browser request, GET included) is refused. Scripts, curl and DBOS Cloud
send neither header, and are not affected.

A page of another site can still send a "simple" request (a form's POST,
text/plain, no custom header) without the browser asking the server first.
So a change asked by a browser (one that sends ``Origin`` or
``Sec-Fetch-Site``) must also carry a header no form can send:
``X-DBOS-Request`` or a JSON ``Content-Type``; for such a request the
browser first sends a preflight (OPTIONS), which this server never grants
to another origin. ``GET /deactivate``, a change on a GET for DBOS
Transact's tools, is refused to browsers altogether (``POST /deactivate``
is its twin for them).

Off loopback, anyone on the network can connect, so the server refuses to
start without a token (``admin_token``, or ``DBOS_ADMIN_TOKEN``), and then
every request but the health check must say ``Authorization: Bearer
<token>``, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from email.message import Message
from typing import Optional
from urllib.parse import urlsplit

from ..error import DBOSConfigError
from .admin_json import HTTPError

# What a browser says of a request it makes for a page of the same origin, or
# for an address the user typed; anything else comes from another site.
_OWN_SITES = ("same-origin", "none")
# Headers only a browser sends on its own; scripts send none of them.
_BROWSER_HEADERS = ("Origin", "Sec-Fetch-Site")
# A header no HTML form can send: the one a page of this server's own origin adds to a change.
REQUEST_HEADER = "X-DBOS-Request"
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_host(headers: Message, bound_host: str) -> None:
    """On a loopback server, the Host header must name this machine."""
    host = headers.get("Host")
    if host is None or not is_loopback(bound_host):
        return
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        name = ""
    if not is_loopback(name):
        raise HTTPError(403, f"Refused: the Host header {host!r} does not name this machine, and this admin "
                             "server listens on loopback only; address it as localhost or 127.0.0.1")


def check_origin(headers: Message) -> None:
    """A state change must not come from a page of another origin."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in _OWN_SITES:
        raise HTTPError(403, f"Refused: a browser sent this request for a page of another site "
                             f"(Sec-Fetch-Site: {site}); the admin server changes state only for "
                             "scripts and its own origin")
    origin = headers.get("Origin")
    if origin is None:
        return
    host = (headers.get("Host") or "").strip().lower()
    if not host or _netloc(origin) != host:
        raise HTTPError(403, f"Refused: the request comes from another origin (Origin: {origin}); the admin "
                             "server changes state only for scripts and its own origin")


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin.strip()).netloc.lower()
    except ValueError:
        return ""


def from_browser(headers: Message) -> bool:
    return any(name in headers for name in _BROWSER_HEADERS)


def check_change(headers: Message, method: str) -> None:
    """A state change: never from another origin; from a browser, only with a
    header no form can send; on a GET (``/deactivate``), never from a browser."""
    check_origin(headers)
    if method == "GET":
        if from_browser(headers) or "Referer" in headers:
            raise HTTPError(403, "Refused: GET /deactivate changes state, so a browser may not ask for it; "
                                 f"use POST /deactivate with the header {REQUEST_HEADER}: 1")
        return
    kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if from_browser(headers) and REQUEST_HEADER not in headers and kind != "application/json":
        raise HTTPError(403, f"Refused: a change asked by a browser must carry the header {REQUEST_HEADER}: 1 "
                             "(or a JSON Content-Type), which no form of another site can send")


def check_token(headers: Message, token: Optional[str]) -> None:
    """With a token configured, the request must carry it as a bearer token."""
    if token is None:
        return
    scheme, _, given = (headers.get("Authorization") or "").strip().partition(" ")
    # Digests of equal length: the comparison's time says nothing of the token, not even its length.
    same = hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                               hashlib.sha256(token.encode()).digest())
    if scheme.lower() != "bearer" or not same:
        raise HTTPError(401, "This admin server needs its token: send the header Authorization: Bearer <token> "
                             "(the admin_token of its configuration)", {"WWW-Authenticate": "Bearer"})


def check_binding(host: str, token: Optional[str]) -> None:
    """Off loopback, a server without a (long enough) token does not start."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise DBOSConfigError("admin_token", f"the admin token must be at least {MIN_TOKEN_LENGTH} characters "
                                             f"long, got {len(token)}")
    if token is None and not is_loopback(host):
        raise DBOSConfigError("admin_token", f"admin_host {host!r} is reachable from other machines, and the "
                                             "admin server can cancel, fork and delete workflows: set admin_token "
                                             "(or the environment variable DBOS_ADMIN_TOKEN), or bind 127.0.0.1")
