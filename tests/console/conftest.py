"""The console in a real browser: Debian's chromium driven by Playwright (the Python package;
it downloads no browser), against a real `pratai serve` of these tests' own.

Each test gets a fresh browser context (no cookies) and a `Console` that fails the test if a
page logs a console error, throws, or breaks the Content-Security-Policy, unless the test said
it expects that error. Screenshots go to .test-artifacts/console/.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers import Server, start_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".test-artifacts" / "console"
CHROMIUM = os.environ.get("PRATAI_TEST_CHROMIUM", "/usr/bin/chromium")
# As root on a machine without a display, GPU or outside network (DEVELOPERS.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Reported to the test through console.error, like any other page error.
_WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


# Per module, not per session: while Playwright's sync API is started, its event loop counts as
# running in this thread, and pytest-asyncio could not run the async tests of other modules.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no browser at {CHROMIUM}: run scripts/ensure-browser (make install-test)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def console_server() -> Iterator[Server]:
    base = Path(tempfile.mkdtemp(prefix="pratai-console-", dir="/var/tmp"))
    base.chmod(0o755)
    srv = start_server(base, PRATAI_IDLE_TIMEOUT="30")
    yield srv
    srv.stop()
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Console:
    server: Server
    page: Page
    problems: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.server.url + path

    def open(self, path: str) -> Page:
        self.page.goto(self.url(path))
        return self.page

    def sign_in_with_key(self, token: str, then: str = "/ui/") -> Page:
        self.open("/ui/signin?next=" + then)
        self.page.fill("input[name=key]", token)
        self.page.click("text=Sign in with key")
        self.page.wait_for_url(self.url(then))
        return self.page

    def sign_in(self, name: str, password: str, project: str = "") -> Page:
        self.open("/ui/signin")
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=password]", password)
        if project:
            self.page.fill("input[name=project]", project)
        self.page.click("button:text-is('Sign in')")
        return self.page

    def expect_error(self, pattern: str) -> None:
        """This test provokes an error on purpose (a refused request, say); the page may log it."""
        self.expected.append(re.compile(pattern))

    def note(self, text: str) -> None:
        if not any(p.search(text) for p in self.expected):
            self.problems.append(text)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def console(browser: Browser, console_server: Server) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(_WATCH_CSP)
    page = context.new_page()
    page.set_default_timeout(15_000)
    view = Console(console_server, page)
    page.on("console", lambda m: m.type == "error" and view.note(f"console: {m.text}"))
    page.on("pageerror", lambda e: view.note(f"page error: {e}"))
    yield view
    context.close()
    assert not view.problems, "the pages logged errors:\n" + "\n".join(view.problems)


def admin(server: Server) -> httpx.Client:
    return server.http()
