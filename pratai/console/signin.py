"""Signing in (a user name and password, or an API key) and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from pratai.console.web import COOKIE, Viewer, render, sessions, set_session
from pratai.core.sessions import SESSION_S
from pratai.errors import Forbidden, RateLimited, Unauthorized

router = APIRouter()


def _next(target: str) -> str:
    """Only a path of this console: a sign-in never sends the browser elsewhere."""
    ok = target.startswith("/ui") and not target.startswith("//") and "\\" not in target
    return target if ok else "/ui/"


@router.get("/signin")
async def signin_page(request: Request, next: str = "/ui/") -> Response:
    return render(request, "signin.html", next=_next(next), problem="")


@router.post("/signin")
async def signin(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    project: Annotated[str, Form()] = "",
    key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ui/",
) -> Response:
    try:
        if key.strip():
            token = await sessions(request).with_key(key.strip())
        else:
            token = await sessions(request).with_password(name.strip(), password, project.strip())
    except (Unauthorized, Forbidden, RateLimited) as exc:
        return render(request, "signin.html", status=exc.status, next=_next(next), problem=str(exc))
    response = RedirectResponse(_next(next), status_code=303)
    set_session(response, request, token, SESSION_S)
    return response


@router.post("/signout")
async def signout(request: Request, who: Viewer) -> Response:
    await sessions(request).close(who)
    response = RedirectResponse("/ui/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
