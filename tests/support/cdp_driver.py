"""Drive a real headless Chromium over the DevTools protocol, with trio-websocket (no new dependencies).

Just enough of CDP for the dashboard's browser test: open a page, find elements, click them with real
mouse events at their coordinates, type, read the console, and take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

CHROMIUM = os.environ.get("HIVE_TESTS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# CI sets this so that a missing browser fails the run instead of skipping it (.ci/run).
REQUIRE_BROWSER = os.environ.get("HIVE_TESTS_REQUIRE_BROWSER", "") not in ("", "0")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--window-size=1400,1000",
]


class CdpError(Exception):
    pass


def need_chromium() -> None:
    """Skip the calling test on a machine without Chromium, or fail it where CI demands a browser."""
    import pytest

    if os.access(CHROMIUM, os.X_OK):
        return
    reason = (
        f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium) "
        "or set HIVE_TESTS_CHROMIUM to run the browser tests"
    )
    if REQUIRE_BROWSER:
        pytest.fail(f"HIVE_TESTS_REQUIRE_BROWSER is set but {reason}", pytrace=False)
    pytest.skip(reason)


class Page:
    """One tab, attached with a flattened session."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.console_errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.call(method, session=self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression!r} threw: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, *, within: float = 10.0) -> Any:
        """Poll a JavaScript condition until it is truthy (the page updates from its websocket)."""
        last: object = None
        try:
            with trio.fail_after(within):
                for _ in range(100_000):
                    try:
                        last = await self.evaluate(expression)
                    except CdpError as exc:  # the page is still loading
                        last = exc
                    # JavaScript truthiness: an element comes back as {} and still counts.
                    if not isinstance(last, CdpError) and last not in (None, False, 0, ""):
                        return last
                    await trio.sleep(0.05)
        except trio.TooSlowError:
            raise AssertionError(f"page never satisfied {expression!r} (last: {last!r})") from None
        raise AssertionError("unreachable")

    async def click(self, selector: str) -> None:
        """A real click: the mouse moves to the element's centre, presses and releases."""
        box = await self.wait_for(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                if (!el || el.disabled) return null;
                el.scrollIntoView({{block: 'center'}});
                const r = el.getBoundingClientRect();
                return r.width && r.height ? {{x: r.x + r.width / 2, y: r.y + r.height / 2}} : null; }})()"""
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            await self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], **extra)

    async def type_into(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.call("Input.insertText", text=text)

    async def screenshot(self, path: Path) -> None:
        reply = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        await trio.Path(path).write_bytes(base64.b64decode(reply["data"]))


class Browser:
    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._ids = 0
        self._waiting: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self.pages: dict[str, Page] = {}

    async def call(self, method: str, *, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._ids += 1
        msg: dict[str, Any] = {"id": self._ids, "method": method, "params": params}
        if session is not None:
            msg["sessionId"] = session
        done, box = trio.Event(), []
        self._waiting[self._ids] = (done, box)
        await self.ws.send_message(json.dumps(msg))
        with trio.fail_after(15):
            await done.wait()
        reply = box[0]
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def read(self) -> None:
        async for raw in _messages(self.ws):
            msg = json.loads(raw)
            if "id" in msg:
                done, box = self._waiting.pop(msg["id"])
                box.append(msg)
                done.set()
                continue
            page = self.pages.get(msg.get("sessionId", ""))
            if page is not None:
                _note_console(page, msg.get("method", ""), msg.get("params", {}))

    async def new_page(self) -> Page:
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = Page(self, attached["sessionId"])
        self.pages[page.session] = page
        for domain in ("Page", "Runtime", "Log"):
            await page.call(f"{domain}.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False
        )
        return page


def _note_console(page: Page, method: str, params: dict[str, Any]) -> None:
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        page.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
    elif method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        page.console_errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        page.console_errors.append(str(params["entry"].get("text")))


async def _messages(ws: WebSocketConnection) -> AsyncIterator[str | bytes]:
    from trio_websocket import ConnectionClosed

    while True:
        try:
            yield await ws.get_message()
        except ConnectionClosed:
            return


@asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    """Start Chromium with a fresh profile, connect to its DevTools socket, and kill it afterwards."""
    profile = Path(tempfile.mkdtemp(prefix="hive-chromium-"))
    try:
        async with await trio.open_file(profile / "chromium.log", "wb") as log:
            process = await trio.lowlevel.open_process(
                [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=log.wrapped,
                stderr=log.wrapped,
            )
        try:
            url = await _devtools_url(profile, process)
            async with (
                trio.open_nursery() as nursery,
                open_websocket_url(url, max_message_size=128 * 1024 * 1024) as ws,
            ):
                browser = Browser(ws)
                nursery.start_soon(browser.read)
                yield browser
                nursery.cancel_scope.cancel()
        finally:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await process.wait()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_url(profile: Path, process: trio.Process) -> str:
    """Chromium writes its DevTools port and browser path to DevToolsActivePort in the profile."""
    active = profile / "DevToolsActivePort"
    with trio.fail_after(30):
        for _ in range(100_000):
            if process.returncode is not None:
                tail = (profile / "chromium.log").read_text(errors="replace")[-800:]
                raise CdpError(f"chromium exited ({process.returncode}) before DevTools was ready: {tail}")
            lines = active.read_text().split() if active.exists() else []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            await trio.sleep(0.05)
    raise AssertionError("unreachable")
