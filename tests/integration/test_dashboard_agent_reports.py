"""The per-agent view and the operator queue in real headless Chromium, fed by REAL harness reports:
a harness-role client (`clients/harness.py` over a socketpair the coordinator serves, as a launch's
would be) reports turns with usage and asks permissions.

- the agent view shows the running turn's transcript live and the finished turns, the usage line and the
  chart of tokens per turn, pending reminders and the budget;
- permission cards sit oldest first in "Needs you", with waited time and deadline, Allow / Always allow /
  Deny; Allow resolves the blocked `request_permission` (checked on the channel and on host.sock);
- Interrupt reaches the harness's `wait_control`.
Screenshots: artifacts/dashboard-agent-transcript.png and artifacts/dashboard-permission.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from cdp_driver import need_chromium, open_browser
from dashboard_support import RecordingLifecycle, running_hive, url_of
from harness_support import open_test_channel
from lifecycle_support import eventually

from hive_trio.clients.harness import Usage
from hive_trio.clients.host import open_host_client
from hive_trio.rules.config import Config

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


@pytest.fixture(autouse=True)
def _chromium() -> None:
    need_chromium()


TRANSCRIPT = "document.querySelector('#agent-view-transcript').innerText"
ORDER = (
    "[...document.querySelectorAll('.attention .item')]"
    ".sort((x, y) => x.getBoundingClientRect().top - y.getBoundingClientRect().top)"
    ".map(e => e.dataset.permission ? 'p' + e.dataset.permission : e.dataset.question ? 'q' + e.dataset.question : 'a')"
)


async def test_the_agent_view_and_the_queue_show_real_harness_reports(config: Config) -> None:
    async with running_hive(config, lifecycle=RecordingLifecycle, permission_ttl=600) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        coord.set_running("alpha", True)
        await coord.reports.set_budget("alpha", daily_tokens=50_000, daily_usd=None)
        await coord.reports.remind("alpha", "check the nightly build", delay_seconds=3600, at=None)
        answers: dict[str, Any] = {}
        answered = {"first": trio.Event(), "second": trio.Event()}
        async with open_test_channel(coord, "alpha") as channel, trio.open_nursery() as nursery:

            async def ask(key: str, tool: str, command: str) -> None:
                answers[key] = await channel.request_permission(tool, {"command": command})
                answered[key].set()

            # One finished turn before the page opens, and a question asked in between the permissions.
            await channel.turn_started("t-1", [1])
            await channel.turn_event("t-1", "text", text="Looking at the <b>flaky</b> test.")
            await channel.turn_event("t-1", "tool_use", tool="Bash", input={"command": "pytest -x"})
            usage = Usage(model="claude-test", input_tokens=1200, output_tokens=300, cost_usd=0.02)
            assert await channel.turn_finished("t-1", "ok", usage=usage) is False
            nursery.start_soon(ask, "first", "Bash", "rm -rf build")
            await wait_until_open(hive, 1)
            question = await coord.ask("alpha", "May I merge?", options=["yes", "no"])
            await trio.sleep(1.1)  # the second request is a second younger: "oldest first" is visible
            nursery.start_soon(ask, "second", "Write", "notes.md")
            await wait_until_open(hive, 2)
            first, second = (await hive_host(hive, "permissions"))["permissions"]

            async with open_browser() as browser:
                page = await browser.new_page()
                await page.call(
                    "Emulation.setDeviceMetricsOverride", width=1280, height=1100, deviceScaleFactor=1, mobile=False
                )
                await page.call("Page.navigate", url=url_of(hive) + "#agent=alpha")
                await page.wait_for("document.body.dataset.sync === 'live'")
                await page.wait_for("!document.querySelector('#agent-view').hidden")
                # The log is read as soon as the page is live, not at the first 2 s poll.
                await page.wait_for("document.querySelector('#agent-view-log').textContent !== ''", within=1.5)

                # Live: a second turn starts and streams while the page looks.
                await channel.turn_started("t-2", [2])
                await channel.turn_event("t-2", "thinking", text="The fixture leaks a port.")
                await channel.turn_event("t-2", "tool_use", tool="Edit", input={"file": "conftest.py"})
                await channel.turn_event("t-2", "text", text="Patching conftest.py now.")
                text = await page.wait_for(f"{TRANSCRIPT}.includes('Patching conftest') && {TRANSCRIPT}")
                assert "running" in text and "Edit" in text and "fixture leaks a port" in text
                # The finished turn from before the page opened comes from the transcript.
                assert "Looking at the <b>flaky</b> test." in text and "ok" in text
                # Text only: the only <b> elements are the turns' own time stamps, none from the report.
                bold = "document.querySelectorAll('#agent-view-transcript b').length"
                heads = "document.querySelectorAll('#agent-view-transcript .turn-head b').length"
                assert await page.evaluate(f"{bold} === {heads} && {heads} === 2")
                facts = await page.evaluate("document.querySelector('#agent-view').innerText")
                assert "claude-test" in facts
                assert "1500 tokens" in facts and "50000 tokens/day" in facts, facts
                assert "check the nightly build" in facts, facts
                assert await page.evaluate("document.querySelectorAll('#agent-view-usage svg rect').length") >= 1

                # The queue: both permissions and the question, oldest first, waited time and deadline.
                await page.wait_for(f"document.querySelector('[data-permission=\"{second['id']}\"]')")
                order = await page.evaluate(ORDER)
                assert order == [f"p{first['id']}", f"q{question.id}", f"p{second['id']}"], order
                card = await page.evaluate(f"document.querySelector('[data-permission=\"{first['id']}\"]').innerText")
                assert "Bash" in card and "rm -rf build" in card and "waiting" in card and "answer within" in card
                assert "9:" in card or "10:" in card, card  # a 600 s deadline
                selector = f'[data-permission="{first["id"]}"] button'
                buttons = await page.evaluate(f"[...document.querySelectorAll('{selector}')].map(b => b.textContent)")
                assert buttons == ["Allow", "Always allow this tool", "Deny"]
                await page.evaluate("document.querySelector('#agent-view').scrollIntoView()")
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(ARTIFACTS / "dashboard-agent-transcript.png")
                # The queue on its own, the agent view closed; then the view again (its turns re-read).
                await page.evaluate("location.hash = ''")
                await page.wait_for("document.querySelector('#agent-view').hidden")
                await page.screenshot(ARTIFACTS / "dashboard-permission.png")
                await page.evaluate("location.hash = '#agent=alpha'")
                await page.wait_for(f"{TRANSCRIPT}.includes('Patching conftest') && {TRANSCRIPT}.includes('flaky')")
                # The log's and the reminders' first reads land too (they move what is below them; a click
                # must not race them).
                await page.wait_for("document.querySelector('#agent-view-log').textContent !== ''")
                await page.wait_for("!document.querySelector('#agent-view-reminders').hidden")

                # Allow resolves the blocked request; host.sock agrees.
                await page.click(f'[data-permission="{first["id"]}"] button.approve')
                await page.wait_for(f"!document.querySelector('[data-permission=\"{first['id']}\"]')")
                with trio.fail_after(10):
                    await answered["first"].wait()
                assert answers["first"].allowed and answers["first"].id == first["id"]
                still = [p["id"] for p in (await hive_host(hive, "permissions"))["permissions"]]
                assert still == [second["id"]]

                # Interrupt reaches wait_control.
                await page.click('#agent-view button[data-op="interrupt"]')
                with trio.fail_after(10):
                    control = await channel.wait_control(5)
                assert control.interrupt

                # The turn ends: the view shows its outcome and the chart has two bars.
                usage = Usage(model="claude-test", input_tokens=400, output_tokens=100, cost_usd=0.01)
                await channel.turn_finished("t-2", "interrupted", usage=usage)
                await page.wait_for("document.querySelectorAll('#agent-view-usage svg rect').length === 2")
                await page.wait_for(f"{TRANSCRIPT}.includes('interrupted')")
                # A budget lowered below today's use: the view says it is exceeded.
                await hive_host(hive, "set_budget", name="alpha", daily_tokens=1000)
                over = "document.querySelector('#agent-view-usage .budget-line.over')"
                budget = await page.wait_for(f"{over} && {over}.textContent")
                assert budget.startswith("Budget: 1000 tokens/day — exceeded"), budget
                await page.click(f'[data-permission="{second["id"]}"] button.deny')
                await page.wait_for(f"!document.querySelector('[data-permission=\"{second['id']}\"]')")
                assert page.console_errors == [], page.console_errors
                with trio.fail_after(10):
                    await answered["second"].wait()
        assert not answers["second"].allowed


async def hive_host(hive: Any, verb: str, **fields: Any) -> dict[str, Any]:
    async with open_host_client(hive.coordinator.paths.host_socket) as host:
        result: dict[str, Any] = await host.request(verb, **fields)
        return result


async def wait_until_open(hive: Any, n: int) -> None:
    async def opened() -> bool:
        return len((await hive_host(hive, "permissions"))["permissions"]) >= n

    await eventually(opened, coord=hive.coordinator, what=f"{n} open permission requests")
