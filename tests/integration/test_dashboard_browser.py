"""The operator's page in a real headless Chromium, driven over CDP with real mouse events.

It loads the page with the token, sees the agent cards, approves a pending approval, answers a
question and sends a message, and the page shows each change with no console errors. Screenshots go
to `artifacts/` (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from cdp_driver import need_chromium, open_browser
from dashboard_support import RecordingLifecycle, add_pending_approval, running_hive, url_of

from hive_trio.records import OPERATOR, ApprovalStatus, TransientKind
from hive_trio.rules.config import Config

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
]


@pytest.fixture(autouse=True)
def _chromium() -> None:
    need_chromium()


DIFF = """diff --git a/agents/alpha/agent.nix b/agents/alpha/agent.nix
index 3b18e51..a9c2f04 100644
--- a/agents/alpha/agent.nix
+++ b/agents/alpha/agent.nix
@@ -4,7 +4,8 @@
   model = "claude-sonnet";
-  tools = [ "git" "rg" ];
+  tools = [ "git" "rg" "jq" ];
+  memoryLimit = "4G";
   # <script>alert('not html')</script> stays text
   restartPolicy = "on-failure";
"""


async def test_operator_approves_answers_and_sends_from_the_page(config: Config) -> None:
    async with running_hive(config, lifecycle=RecordingLifecycle) as hive:
        coord = hive.coordinator
        for name in ("alpha", "beta", "gamma"):
            await coord.record_spawn(name)
        await coord.set_paused("gamma", False)
        coord.set_running("alpha", True)
        coord.set_running("beta", True)
        await coord.set_status_text("alpha", "reviewing the flake update")
        approval = await add_pending_approval(coord, "alpha", diff=DIFF)
        question = await coord.ask(
            "beta",
            "Tests are flaky on CI. Should I quarantine test_sync or retry it?",
            options=["quarantine", "retry 3 times"],
            ttl_seconds=900,
            default_answer="retry 3 times",
        )
        await coord.send("alpha", "beta", "I pushed the fix for the sync test; can you rerun it?")
        await coord.send("beta", OPERATOR, "<b>CI is green</b> again — bodies are text, not HTML.")
        hold_spinner = trio.Event()

        async def restarting_gamma() -> None:
            with coord.transient("gamma", TransientKind.RESTARTING):
                await hold_spinner.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(restarting_gamma)
            async with open_browser() as browser:
                page = await browser.new_page()
                await page.call("Page.navigate", url=url_of(hive))
                await page.wait_for("document.querySelector('#conn').dataset.state === 'live'")
                await page.wait_for("document.querySelector('[data-agent=\"alpha\"] .state.running')")
                await page.wait_for("document.querySelector('[data-agent=\"gamma\"] .spinner')")
                # The token left the address bar (the session cookie carries it now).
                assert "token" not in await page.evaluate("location.href")
                # Data is text: the message's markup is shown, not rendered.
                assert await page.evaluate("document.querySelectorAll('#log b b, #log .body b').length") == 0
                assert "<b>CI is green</b>" in await page.evaluate("document.querySelector('#log').textContent")
                assert await page.evaluate("document.querySelectorAll('.diff-body .add').length") == 2
                await page.screenshot(ARTIFACTS / "dashboard.png")

                card = f'[data-approval="{approval.id}"]'
                await page.type_into(f"{card} input[type=text]", "ship it")
                await page.click(f"{card} button.approve")
                await page.wait_for(f"!document.querySelector('{card}')")

                qcard = f'[data-question="{question.id}"]'
                await page.click(f'{qcard} input[value="quarantine"]')
                await page.click(f"{qcard} button.primary")
                await page.wait_for(f"!document.querySelector('{qcard}')")
                await page.wait_for("!document.querySelector('#attention-empty').hidden")

                await page.evaluate("document.querySelector('#send-to').value = 'alpha'")
                await page.type_into("#send-body", "thanks, merging now")
                await page.click("#send button[type=submit]")
                await page.wait_for("document.querySelector('#log').textContent.includes('thanks, merging now')")

                # The page reconnects and resumes: what happened while it was away shows, once.
                await page.evaluate("hive.reconnect()")
                await page.wait_for("document.querySelector('#conn').dataset.state === 'reconnecting'")
                await coord.send("beta", OPERATOR, "sent while the page was away")
                await page.wait_for("document.querySelector('#log').textContent.includes('while the page was away')")
                assert await page.evaluate("[hive.stats.snapshots, hive.stats.resumes]") == [1, 1]

                lifecycle = coord.ops
                assert isinstance(lifecycle, RecordingLifecycle)
                await page.click('[data-agent="beta"] button[data-op="stop"]')
                with trio.fail_after(5):
                    for _ in range(1000):
                        if ("stop", "beta") in lifecycle.calls:
                            break
                        await trio.sleep(0.01)
                hold_spinner.set()
                await page.wait_for("!document.querySelector('[data-agent=\"gamma\"] .spinner')")
                await page.screenshot(ARTIFACTS / "dashboard-after.png")
                assert page.console_errors == [], json.dumps(page.console_errors, indent=2)

        stored = await coord.get_approval(approval.id)
        assert stored.status is ApprovalStatus.APPROVED and stored.note == "ship it"
        answered = await coord.get_question(question.id)
        assert answered.answer == "quarantine" and answered.answerer == OPERATOR
        assert [m.body for m in await coord.recent_messages("alpha")][-1] == "thanks, merging now"


async def test_without_a_token_the_page_says_how_to_get_one(config: Config) -> None:
    async with running_hive(config) as hive:
        assert hive.dashboard_url is not None
        async with open_browser() as browser:
            page = await browser.new_page()
            await page.call("Page.navigate", url=hive.dashboard_url)
            text = await page.wait_for("document.querySelector('main.notice h1')?.textContent")
            assert text == "This dashboard needs its token"
            # Styled by the dashboard's stylesheet, not refused by its own CSP.
            await page.wait_for("getComputedStyle(document.querySelector('main')).maxWidth === '576px'")
            await page.screenshot(ARTIFACTS / "dashboard-no-token.png")
            assert [e for e in page.console_errors if "401" not in e] == []
