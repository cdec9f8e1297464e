"""Who may reach the admin server from a browser: nobody else's page.

The server has no login: on loopback, any page a local browser opens could
otherwise send it requests. Two checks keep such pages out. A Host header
naming another host means a page reached this server by DNS rebinding (its
name re-pointed at 127.0.0.1): refused on a loopback server, for every
request, since the page could read the answers. And a change asked from a
page of another origin (``Origin`` on a POST, ``Sec-Fetch-Site`` on any
browser request, GET included) is refused. Scripts, curl and DBOS Cloud
send neither header, and are not affected.
"""

from __future__ import annotations

import ipaddress
from email.message import Message
from urllib.parse import urlsplit

from .admin_json import HTTPError

# What a browser says of a request it makes for a page of the same origin, or
# for an address the user typed; anything else comes from another site.
_OWN_SITES = ("same-origin", "none")


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
