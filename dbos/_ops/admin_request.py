"""Reading an admin request's body: its length checked, its bytes read with
a short timeout, its JSON parsed, every failure a 4xx said at once.

A body shorter than its ``Content-Length`` would otherwise hold the request
until the connection's 30 s timeout: reading waits at most
``BODY_READ_TIMEOUT_S`` for each chunk, which a live client sends well
within, and then answers 400. JSON nested too deeply for the parser is a
400 too, not a 500.
"""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler
from typing import Any

from .admin_json import HTTPError

MAX_BODY_BYTES = 10 * 1024 * 1024
BODY_READ_TIMEOUT_S = 2.0


def read_body(request: BaseHTTPRequestHandler, mode: str, bad_json: int) -> Any:
    """The parsed JSON body; ``mode`` "none" ignores it, "optional" or "required" reads it."""
    if mode == "none":
        return None
    what = f"{request.command} {request.path}"
    length = request.headers.get("Content-Length")
    if length is None:
        # A chunked body would otherwise be taken for no body, its filters ignored.
        if mode == "required" or "Transfer-Encoding" in request.headers:
            raise HTTPError(411, f"{what} needs a Content-Length header (chunked bodies are not supported)")
        return None
    raw = _read(request, body_length(length))
    if not raw.strip():
        if mode == "required":
            raise HTTPError(400, f"{what} needs a JSON body; it was empty")
        return None
    return parse_json(raw, bad_json)


def parse_json(raw: bytes, bad_json: int = 400) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise HTTPError(400, "Invalid JSON input: nested too deeply") from None
    except ValueError as exc:
        raise HTTPError(bad_json, f"Invalid JSON input: {exc}") from None


def _read(request: BaseHTTPRequestHandler, size: int) -> bytes:
    request.connection.settimeout(BODY_READ_TIMEOUT_S)
    try:
        raw = request.rfile.read(size)
    except (socket.timeout, OSError):
        raw = b""
    finally:
        request.connection.settimeout(request.timeout)
    if len(raw) < size:
        request.close_connection = True  # what is left of the body would be read as the next request
        raise HTTPError(400, f"The request body is shorter than its Content-Length: {size} bytes did not "
                             f"arrive within {BODY_READ_TIMEOUT_S:g} s")
    return raw


def body_length(header: str) -> int:
    try:
        size = int(header)
    except ValueError:
        raise HTTPError(400, f"Content-Length must be an integer, got {header!r}") from None
    if size < 0:
        raise HTTPError(400, f"Content-Length must not be negative, got {size}")
    if size > MAX_BODY_BYTES:
        raise HTTPError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes")
    return size
