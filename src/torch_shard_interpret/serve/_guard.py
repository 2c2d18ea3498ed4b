"""ASGI middleware that refuses strangers before any handler runs.

In order: the Host header must be one of the allowed names, matched exactly (DNS-rebinding protection);
with a token, every request must carry it (``?token=`` once, which sets a cookie, then the cookie or an
``X-TSI-Token`` header); every ``/api`` request whose ``Origin`` is not this server's own, or that a browser
marks ``Sec-Fetch-Site: cross-site``, gets 403 (GETs too, since some compute); bodies over ``max_body``
bytes get 413 (checked on the declared length and while reading); an upload path in ``uploads`` has its own
limit and names what would be right in its 413.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.responses import JSONResponse

COOKIE = "tsi_token"


class BodyTooLarge(Exception):
    pass


def _err(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def host_name(host_header: str) -> str:
    """``'[::1]:8765'`` -> ``'::1'``, ``'Example.org:80'`` -> ``'example.org'``, ``'localhost'`` -> ``'localhost'``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        inside, _, rest = h[1:].partition("]")
        return inside if rest == "" or (rest[0] == ":" and rest[1:].isdigit()) else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


class Guard:
    def __init__(
        self,
        app: Any,
        max_body: int,
        allowed_hosts: Iterable[str] | None,
        token: str | None = None,
        uploads: dict[str, tuple[int, str]] | None = None,
    ):
        self.app = app
        self.max_body = max_body
        self.uploads = dict(uploads or {})  # path -> (its body limit, what a right upload is)
        self.allowed = None if allowed_hosts is None else {host_name(h) for h in allowed_hosts}
        self.token = token

    def _refusal(self, scope: dict, headers: dict[str, str]) -> tuple[JSONResponse | None, bool]:
        """(a response refusing the request, or None; whether to set the token cookie)."""
        host = headers.get("host", "")
        if self.allowed is not None and host_name(host) not in self.allowed:
            return _err(
                400, f"host {host_name(host)!r} is not served here (see tsi serve --allowed-host)"
            ), False
        path = scope.get("path", "")
        if path.startswith("/api"):
            origin = headers.get("origin")
            if origin is not None:
                parts = urlsplit(origin)
                if (
                    origin == "null"
                    or parts.netloc.lower() != host.lower()
                    or parts.scheme not in ("http", "https")
                ):
                    return _err(403, f"cross-origin request from {origin!r} refused"), False
            if headers.get("sec-fetch-site", "").lower() == "cross-site":
                return _err(403, "cross-site request refused (Sec-Fetch-Site: cross-site)"), False
        set_cookie = False
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = headers.get("x-tsi-token") or _cookie(headers, COOKIE)
            from_url = (query.get("token") or [None])[0]
            if given is None and from_url is not None:
                given, set_cookie = from_url, True
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                return _err(401, "this server needs its token: open the URL that tsi serve printed"), False
        return None, set_cookie

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal, set_cookie = self._refusal(scope, headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        length = headers.get("content-length")
        limit, right = self.uploads.get(scope.get("path", ""), (self.max_body, None))
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                return await _err(400, "invalid Content-Length header")(scope, receive, send)
            if too_big:
                msg = f"request body is {length} bytes; the limit is {limit}"
                if right is not None:
                    msg = f"the upload is {int(length):,} bytes; {right}"
                return await _err(413, msg)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if set_cookie and self.token is not None:
                    cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())],
                    }
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except BodyTooLarge:
            if not started:
                msg = f"request body is over the limit of {limit} bytes"
                if right is not None:
                    msg = f"the upload is over {limit:,} bytes; {right}"
                await _err(413, msg)(scope, receive, send)
