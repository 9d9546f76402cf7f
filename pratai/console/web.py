"""What every console page shares: templates, the signed-in principal, CSRF and Origin checks,
security headers, and errors as pages (or, for htmx requests, as a flash message)."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import pratai
from pratai.api.deps import Services, services, services_of
from pratai.core.sessions import Sessions, csrf_token
from pratai.core.tenants import Principal, may
from pratai.errors import Forbidden, InvalidInput, NotFound, PrataiError, Unauthorized

COOKIE = "pratai_session"
HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class SignInNeeded(Exception):
    """No session, or one that ended: the answer is the sign-in page."""


def _ago(at: float | None) -> str:
    if not at:
        return "never"
    seconds = max(0.0, time.time() - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + " UTC" if at else ""


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"  # a trivial call: 0.02 ms


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(ago=_ago, when=_when, ms=_ms, tojson_attr=json.dumps)
templates.globals.update(version=pratai.__version__, quote=quote)


def sessions(request: Request) -> Sessions:
    return Sessions(services_of(request).tenants)


async def viewer(request: Request) -> Principal:
    """The principal of the session cookie; pages without one answer with the sign-in page."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise SignInNeeded
    try:
        who = await sessions(request).who(token)
    except Unauthorized:
        raise SignInNeeded from None
    request.state.principal = who  # for the audit log
    request.state.csrf = csrf_token(token)
    await services_of(request).tenants.limit(who)
    return who


def role(action: str) -> Any:
    """A dependency: the viewer, refused (403) unless the role may do `action`."""

    async def check(who: Annotated[Principal, Depends(viewer)]) -> Principal:
        if not may(who, action):
            raise Forbidden(f"role {who.role} may not {action}")
        return who

    return Depends(check)


Viewer = Annotated[Principal, Depends(viewer)]
Svc = Annotated[Services, Depends(services)]


N = TypeVar("N", int, float)


def form_number(text: str, what: str, kind: Callable[[str], N]) -> N | None:
    """A number from a form field; an empty field leaves the setting as it is."""
    if not text.strip():
        return None
    try:
        return kind(text.strip())
    except ValueError:
        whole = " whole" if kind is int else ""
        raise InvalidInput(f"{what} must be a{whole} number, not {text.strip()!r}") from None


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    who: Principal | None = getattr(request.state, "principal", None)
    page = templates.get_template(name).render(
        request=request,
        who=who,
        can=(lambda action: who is not None and may(who, action)),
        csrf=getattr(request.state, "csrf", ""),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(page, status_code=status)


def same_origin(request: Request) -> bool:
    """A browser names the page a request comes from; only pages of this console may write."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc == request.headers.get("host")


async def guard(request: Request) -> None:
    """Every write carries the session's CSRF token (a form field or an X-CSRF-Token header,
    which htmx sends) and comes from this console's own origin. Runs on every console route."""
    if request.method not in _UNSAFE:
        return
    if not same_origin(request):
        raise Forbidden("cross-origin request refused")
    if request.url.path.endswith("/signin"):
        return  # no session yet; the Origin check is what stands against login CSRF
    token = request.cookies.get(COOKIE, "")
    if not token:  # refused before a body (an upload, say) is read
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    given = request.headers.get("x-csrf-token", "")
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get("csrf")
        given = field if isinstance(field, str) else ""
    if not given or not hmac.compare_digest(given, csrf_token(token)):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


def error_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SignInNeeded):
        target = "/ui/signin?next=" + quote(request.url.path, safe="/")
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        response: Response = RedirectResponse(target, status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response
    if isinstance(exc, HTTPException):  # no such page, or a method the page does not take
        status = exc.status_code
        exc = NotFound("no such page") if status == 404 else PrataiError(str(exc.detail))
        exc.status = status
    assert isinstance(exc, PrataiError)
    if request.headers.get("hx-request"):
        flash = render(request, "flash.html", status=exc.status, message=exc.message)
        flash.headers.update({"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
        return flash
    return render(request, "error.html", status=exc.status, error=exc)


def set_session(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


class SecurityHeaders:
    """The Content-Security-Policy (no inline script or style) and friends on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, add if scope["type"] == "http" else send)
