"""The operator's page in real headless Chromium: on a phone, while connecting, and once the daemon is
gone and back. Screenshots go to `artifacts/` for a person to look at.

- a pending approval whose diff has a very long line, at 420 and 375 px in mobile emulation: the page
  never scrolls sideways, the diff scrolls in its own box, Approve/Deny/Answer/Send are on screen;
- before the first snapshot the page says it is connecting, and claims neither "Nothing needs you"
  nor "No agents yet";
- when the daemon goes away every card says "unknown" and every action button is off, until the page
  has reconnected and resynced with a daemon on the same state;
- the message log hides system notices unless asked, and filters by agent.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cdp_driver import Page, need_chromium, open_browser
from dashboard_support import RecordingLifecycle, add_pending_approval, running_hive, url_of

from hive_trio.records import OPERATOR, SYSTEM_SENDER
from hive_trio.rules.config import Config

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

LONG_LINE = '+  description = "' + "a very long line that no phone can show in one go " * 12 + '";'
DIFF = f"""--- a/agents/alpha/agent.toml
+++ b/agents/alpha/agent.toml
@@ -1,3 +1,3 @@
 [agent]
-description = "short"
{LONG_LINE}
"""

NO_PAGE_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
# Every button that must be reachable: its box lies within the viewport's width.
ON_SCREEN = """(() => {
  const out = {};
  for (const [name, sel] of Object.entries(%s)) {
    const el = document.querySelector(sel);
    if (!el) { out[name] = "missing"; continue; }
    const r = el.getBoundingClientRect();
    out[name] = r.left >= 0 && r.right <= window.innerWidth ? "ok" : `${Math.round(r.left)}..${Math.round(r.right)}`;
  }
  return out;
})()"""


@pytest.fixture(autouse=True)
def _chromium() -> None:
    need_chromium()


async def phone(page: Page, width: int) -> None:
    await page.call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=2, mobile=True)


async def test_a_pending_approval_with_a_long_diff_line_fits_a_phone(config: Config) -> None:
    # RecordingLifecycle resolves approvals as the real one does.
    async with running_hive(config, lifecycle=RecordingLifecycle) as hive:
        coord = hive.coordinator
        for name in ("alpha", "beta"):
            await coord.record_spawn(name)
        coord.set_running("alpha", True)
        approval = await add_pending_approval(coord, "alpha", diff=DIFF)
        question = await coord.ask("beta", "Quarantine test_sync or retry it?", options=["quarantine", "retry"])
        async with open_browser() as browser:
            page = await browser.new_page()
            for width in (420, 375):
                await phone(page, width)
                await page.call("Page.navigate", url=url_of(hive))
                await page.wait_for("document.body.dataset.sync === 'live'")
                await page.wait_for(f"document.querySelector('[data-approval=\"{approval.id}\"] .diff-body')")
                assert await page.evaluate("window.innerWidth") == width
                assert await page.evaluate(NO_PAGE_SCROLL), await page.evaluate(
                    "[document.documentElement.scrollWidth, window.innerWidth]"
                )
                wanted = {
                    "approve": f'[data-approval="{approval.id}"] button.approve',
                    "deny": f'[data-approval="{approval.id}"] button.deny',
                    "answer": f'[data-question="{question.id}"] button.primary',
                    "send": "#send button[type=submit]",
                }
                # Scrolled into view one by one: each is reachable without any sideways scroll.
                for name, selector in wanted.items():
                    await page.evaluate(f"document.querySelector({json.dumps(selector)}).scrollIntoView()")
                    placed = await page.evaluate(ON_SCREEN % json.dumps({name: selector}))
                    assert placed == {name: "ok"}, (width, placed)
                # The long line scrolls inside the diff's own box.
                assert await page.evaluate(
                    "(() => { const p = document.querySelector('.diff-body'); "
                    "return p.scrollWidth > p.clientWidth && p.getBoundingClientRect().right <= innerWidth; })()"
                )
                await page.evaluate("window.scrollTo(0, 0)")
                await page.screenshot(ARTIFACTS / f"dashboard-phone-{width}.png")
            await page.click(f'[data-approval="{approval.id}"] button.approve')
            await page.wait_for(f"!document.querySelector('[data-approval=\"{approval.id}\"]')")
            assert page.console_errors == [], page.console_errors


NEVER_OPENS = """
window.WebSocket = class { constructor() { this.readyState = 0; } addEventListener() {} send() {} close() {} };
"""


async def test_while_connecting_the_page_says_so_and_claims_nothing(config: Config) -> None:
    async with running_hive(config) as hive:
        await hive.coordinator.record_spawn("alpha")
        async with open_browser() as browser:
            page = await browser.new_page()
            # A stream that never opens: the page is caught for good in the state it shows at first.
            await page.call("Page.addScriptToEvaluateOnNewDocument", source=NEVER_OPENS)
            await page.call("Page.navigate", url=url_of(hive))
            await page.wait_for("document.readyState === 'complete'")
            assert await page.evaluate("document.body.dataset.sync") == "connecting"
            assert await page.evaluate("document.querySelector('#conn-text').textContent") == "connecting…"
            shown = await page.evaluate("document.body.innerText")
            assert "Connecting to the hive" in shown
            assert "Nothing needs you" not in shown and "No agents yet" not in shown
            assert await page.evaluate("[...document.querySelectorAll('main button')].every(b => b.disabled)")
            await page.screenshot(ARTIFACTS / "dashboard-connecting.png")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_when_the_daemon_is_gone_cards_say_unknown_and_actions_wait_for_a_resync(config: Config) -> None:
    port = free_port()
    async with open_browser() as browser:
        page = await browser.new_page()
        async with running_hive(config, dashboard_port=port) as hive:
            coord = hive.coordinator
            for name in ("alpha", "beta"):
                await coord.record_spawn(name)
            coord.set_running("alpha", True)
            await add_pending_approval(coord, "alpha")
            await coord.send("alpha", OPERATOR, "from alpha to you")
            await coord.send("beta", "alpha", "beta chats with alpha")
            await coord.send(SYSTEM_SENDER, "alpha", "a notice for alpha")
            await page.call("Page.navigate", url=url_of(hive))
            await page.wait_for("document.body.dataset.sync === 'live'")
            await page.wait_for("document.querySelector('[data-agent=\"alpha\"] .state.running')")

            # The log: system notices hidden by default, shown on request; one agent's traffic on choice.
            log_text = "document.querySelector('#log').innerText"
            text = await page.wait_for(f"{log_text}.includes('beta chats') && {log_text}")
            assert "a notice for alpha" not in text
            await page.click("#log-system")
            await page.wait_for(f"{log_text}.includes('a notice for alpha')")
            await page.evaluate(
                "(() => { const s = document.querySelector('#log-agent'); s.value = 'beta'; "
                "s.dispatchEvent(new Event('change')); })()"
            )
            text = await page.wait_for(f"!{log_text}.includes('from alpha to you') && {log_text}")
            assert "beta chats with alpha" in text
            await page.evaluate(
                "(() => { const s = document.querySelector('#log-agent'); s.value = ''; "
                "s.dispatchEvent(new Event('change')); })()"
            )
        # The daemon is gone.
        await page.wait_for("document.body.dataset.sync === 'stale'")
        states = await page.evaluate(
            "[...document.querySelectorAll('.agent:not(.manager-card) .state')].map(e => e.textContent)"
        )
        assert states == ["unknown", "unknown"]
        enabled = await page.evaluate(
            "[...document.querySelectorAll('main button')].filter(b => !b.disabled).map(b => b.textContent)"
        )
        assert enabled == []
        shown = await page.evaluate("document.body.innerText")
        assert "Not connected" in shown and "Nothing needs you" not in shown
        await page.screenshot(ARTIFACTS / "dashboard-disconnected.png")

        # A daemon on the same state and port: the page reconnects, resyncs, and the actions come back.
        async with running_hive(config, dashboard_port=port):
            await page.wait_for("document.body.dataset.sync === 'live'", within=20)
            # Bare agents are not running after a restart; what matters is that the card knows again.
            await page.wait_for("document.querySelector('[data-agent=\"alpha\"] .state.stopped')")
            assert await page.evaluate("document.querySelector('button.approve').disabled") is False
            assert await page.evaluate("document.querySelector('#send button').disabled") is False
        # Chromium reports each refused reconnect as a console error; nothing else may appear.
        unexpected = [e for e in page.console_errors if "WebSocket connection" not in e]
        assert unexpected == [], unexpected


async def test_the_agent_view_shows_its_state_log_and_controls(config: Config) -> None:
    async with running_hive(config, lifecycle=RecordingLifecycle) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        coord.set_running("alpha", True)
        await coord.set_status_text("alpha", "reviewing the flake update")
        log = coord.paths.agent_log("alpha")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("[alpha] started\n[alpha] <b>not markup</b>\n")
        coord.paths.manager_log.write_text("[manager] proposed a config change\n")
        async with open_browser() as browser:
            page = await browser.new_page()
            await page.call("Page.navigate", url=url_of(hive))
            await page.wait_for("document.body.dataset.sync === 'live'")
            await page.click('[data-agent="alpha"] a.agent-name')
            await page.wait_for("!document.querySelector('#agent-view').hidden")
            assert await page.evaluate("location.hash") == "#agent=alpha"
            facts = await page.evaluate("document.querySelector('#agent-view-facts').innerText")
            assert "reviewing the flake update" in facts
            await page.wait_for("document.querySelector('#agent-view-log').textContent.includes('not markup')")
            assert await page.evaluate("document.querySelectorAll('#agent-view-log b').length") == 0
            # The log follows: what is appended shows up on the next poll.
            with log.open("a") as fh:
                fh.write("[alpha] one more line\n")
            await page.wait_for("document.querySelector('#agent-view-log').textContent.includes('one more line')")
            await page.click('#agent-view button[data-op="set_paused"]')
            await page.wait_for("document.querySelector('#agent-view-state').textContent === 'paused'")
            assert (await coord.find_agent("alpha")).paused  # type: ignore[union-attr]
            await page.wait_for(
                "document.querySelector('#agent-view button[data-op=\"set_paused\"]').textContent === 'Resume'"
            )
            await page.screenshot(ARTIFACTS / "dashboard-agent-view.png")
            await page.click('#agent-view button[data-op="set_paused"]')
            await page.wait_for("document.querySelector('#agent-view-state').textContent === 'running'")

            await page.click('[data-agent="manager"] a.agent-name')
            await page.wait_for("document.querySelector('#agent-view-log').textContent.includes('proposed a config')")
            await page.click("#agent-view-close")
            await page.wait_for("document.querySelector('#agent-view').hidden")
            assert page.console_errors == [], page.console_errors


async def test_needs_you_is_oldest_first_with_waited_time_and_a_history_of_who_resolved_what(config: Config) -> None:
    async with running_hive(config, lifecycle=RecordingLifecycle) as hive:
        coord = hive.coordinator
        for name in ("alpha", "beta"):
            await coord.record_spawn(name)
        first = await coord.ask("beta", "first question, asked before the approval", options=["a", "b"])
        approval = await add_pending_approval(coord, "alpha")
        second = await coord.ask("alpha", "second question", ttl_seconds=600)
        async with open_browser() as browser:
            page = await browser.new_page()
            await page.call("Page.navigate", url=url_of(hive))
            await page.wait_for("document.body.dataset.sync === 'live'")
            await page.wait_for(f"document.querySelector('[data-question=\"{second.id}\"]')")
            order = await page.evaluate(
                "[...document.querySelectorAll('.attention .item')]"
                ".sort((x, y) => x.getBoundingClientRect().top - y.getBoundingClientRect().top)"
                ".map(e => e.dataset.question ? 'q' + e.dataset.question : 'a' + e.dataset.approval)"
            )
            assert order == [f"q{first.id}", f"a{approval.id}", f"q{second.id}"]
            assert await page.evaluate("document.querySelector('#history-box').hidden")
            waits = await page.evaluate("[...document.querySelectorAll('.attention .waited')].map(e => e.textContent)")
            assert len(waits) == 3 and all(w.endswith("s") or w.endswith("m") for w in waits), waits

            await page.click(f'[data-question="{first.id}"] input[value="b"]')
            await page.click(f'[data-question="{first.id}"] button.primary')
            await page.wait_for(f"!document.querySelector('[data-question=\"{first.id}\"]')")
            await page.type_into(f'[data-approval="{approval.id}"] input[type=text]', "not this one")
            await page.click(f'[data-approval="{approval.id}"] button.deny')
            await page.wait_for(f"!document.querySelector('[data-approval=\"{approval.id}\"]')")
            await page.evaluate("document.querySelector('#history-box').open = true")
            history = await page.wait_for(
                "document.querySelectorAll('#history li').length === 2 && document.querySelector('#history').innerText"
            )
            lines = history.splitlines()
            assert any(f"approval #{approval.id}" in x for x in lines), history
            assert "denied — “not this one”" in history and "answered “b”" in history
            assert history.count("by operator") == 2
            await page.screenshot(ARTIFACTS / "dashboard-history.png")
            assert page.console_errors == [], page.console_errors
