"""Signing in and out, the session cookie, CSRF and the Content-Security-Policy."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.console.conftest import Console


def _user(console: Console, role: str = "developer", password: str = "correct horse 1") -> str:
    name = f"u{uuid.uuid4().hex[:8]}"
    with console.server.http() as http:
        assert (
            http.post(
                "/v1/users", json={"name": name, "project": "default", "role": role}
            ).status_code
            == 201
        )
        assert (
            http.put(f"/v1/users/{name}/password", json={"password": password}).status_code == 204
        )
    return name


def test_signing_in_with_a_key_opens_a_session_in_an_httponly_strict_cookie(
    console: Console,
) -> None:
    page = console.sign_in_with_key(console.server.api_key)
    assert page.locator("header .project").inner_text() == "default"
    assert page.locator("header .role").text_content() == "admin"
    cookie = next(c for c in page.context.cookies() if c["name"] == "pratai_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    # The cookie is a session of its own, not the key the user typed.
    assert cookie["value"] != console.server.api_key
    response = page.request.get(console.url("/ui/"))
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    console.shot("signin-overview")


def test_a_password_signs_in_and_signing_out_ends_the_session(console: Console) -> None:
    name = _user(console, role="viewer")
    page = console.sign_in(name, "correct horse 1")
    page.wait_for_url(console.url("/ui/"))
    assert page.locator("header .role").text_content() == "viewer"
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "pratai_session")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/ui/signin$"))
    # The session's key was revoked, not merely forgotten by this browser.
    with console.server.http() as http:
        assert (
            http.get("/v1/whoami", headers={"Authorization": f"Bearer {session}"}).status_code
            == 401
        )
    console.open("/ui/")
    assert page.url.endswith("/ui/signin?next=/ui/")


def test_a_wrong_password_is_refused_with_a_message(console: Console) -> None:
    name = _user(console)
    console.expect_error(r"status of 401")
    page = console.sign_in(name, "not the password")
    assert page.get_by_role("alert").inner_text() == "wrong user name or password"
    assert not [c for c in page.context.cookies() if c["name"] == "pratai_session"]


def test_a_write_without_the_csrf_token_or_from_another_origin_is_refused(console: Console) -> None:
    page = console.sign_in_with_key(console.server.api_key)
    here = {"origin": console.server.url}
    no_token = page.request.post(console.url("/ui/signout"), headers=here, form={"x": "1"})
    assert no_token.status == 403 and "CSRF" in no_token.text()
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    elsewhere = page.request.post(
        console.url("/ui/signout"), headers={"origin": "http://evil.example"}, form={"csrf": token}
    )
    assert elsewhere.status == 403 and "cross-origin" in elsewhere.text()
    # Neither ended the session.
    assert page.request.get(console.url("/ui/")).url == console.url("/ui/")
    signed_out = page.request.post(console.url("/ui/signout"), headers=here, form={"csrf": token})
    assert signed_out.ok and signed_out.url.endswith("/ui/signin")


def test_v1_stays_bearer_only_whatever_cookie_the_browser_holds(console: Console) -> None:
    page = console.sign_in_with_key(console.server.api_key)
    answer = page.request.get(console.url("/v1/whoami"))
    assert answer.status == 401


def test_users_set_their_own_password_and_only_admins_set_anothers(console: Console) -> None:
    other = _user(console)
    with console.server.http() as admin:
        made = admin.post(
            "/v1/users",
            json={"name": f"v{uuid.uuid4().hex[:8]}", "project": "default", "role": "viewer"},
        )
    name, token = made.json()["name"], made.json()["token"]
    with httpx.Client(
        base_url=console.server.url, headers={"Authorization": f"Bearer {token}"}
    ) as viewer:
        assert (
            viewer.put(f"/v1/users/{name}/password", json={"password": "my own secret"}).status_code
            == 204
        )
        refused = viewer.put(f"/v1/users/{other}/password", json={"password": "not my password"})
        assert refused.status_code == 403
        short = viewer.put(f"/v1/users/{name}/password", json={"password": "short"})
        assert short.status_code == 400 and "password" in short.json()["message"]
    page = console.sign_in(name, "my own secret")
    page.wait_for_url(console.url("/ui/"))


def test_guessing_a_password_is_cut_short_after_ten_tries(console: Console) -> None:
    name = _user(console)
    console.expect_error(r"status of 40[13]|status of 429")
    for _ in range(10):
        console.sign_in(name, "a wrong guess")
        assert console.page.get_by_role("alert").inner_text() == "wrong user name or password"
    console.sign_in(name, "correct horse 1")  # even the right one, for the rest of the window
    assert "too many sign-in attempts" in console.page.get_by_role("alert").inner_text()
    assert not [c for c in console.page.context.cookies() if c["name"] == "pratai_session"]
