"""The federation link line on the operator's page, in real headless Chromium (docs/FEDERATION.md):
a hive whose NATS is unreachable says DISCONNECTED with its outbox and why; two linked hives say
connected and list each other's agents. Real embedded nats-servers, real snapshots with `link`."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from cdp_driver import need_chromium, open_browser
from dashboard_support import running_hive, url_of
from federation_support import linked_pair, wait_until

from hive_trio.federation.server import free_port
from hive_trio.rules.config import Config
from hive_trio.rules.federation import FederationConfig

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

LINE = "document.querySelector('#federation')"


@pytest.fixture(autouse=True)
def _chromium() -> None:
    need_chromium()


async def test_an_unreachable_link_shows_disconnected_with_its_outbox_and_reason(config: Config) -> None:
    fed = FederationConfig(enabled=True, hive="a", url=f"nats://127.0.0.1:{free_port()}")
    async with running_hive(config, federation=fed) as hive:
        await hive.coordinator.record_spawn("alice")
        await hive.coordinator.send("alice", "bob@b", "when the link is back")
        async with open_browser() as browser:
            page = await browser.new_page()
            await page.call("Page.navigate", url=url_of(hive))
            await page.wait_for("document.body.dataset.sync === 'live'")
            text = await page.wait_for(f"!{LINE}.hidden && {LINE}.textContent")
            assert text.startswith("Link a: DISCONNECTED · outbox 1 · oldest unforwarded "), text
            assert "no contact yet" in text and "error: " in text
            await page.screenshot(ARTIFACTS / "dashboard-federation-down.png")
            assert page.console_errors == [], page.console_errors


async def test_two_linked_hives_show_connected_and_each_others_agents(short_tmp: Path) -> None:
    fed_a, fed_b = linked_pair()
    base = Config(dashboard_enabled=False, admin_group=None)
    config_a = attrs.evolve(base, state_dir=short_tmp / "a" / "s", runtime_dir=short_tmp / "a" / "r", federation=fed_a)
    config_b = attrs.evolve(base, state_dir=short_tmp / "b" / "s", runtime_dir=short_tmp / "b" / "r", federation=fed_b)
    async with running_hive(config_b) as hb, running_hive(config_a) as ha:
        await hb.coordinator.record_spawn("bob")
        await ha.coordinator.record_spawn("alice")

        async def linked() -> bool:
            remote = await ha.coordinator.remote_agents()
            return any(r.address == "bob@b" for r in remote)

        await wait_until(linked, seconds=15)
        async with open_browser() as browser:
            page = await browser.new_page()
            await page.call("Page.navigate", url=url_of(ha))
            await page.wait_for("document.body.dataset.sync === 'live'")
            text = await page.wait_for(f"!{LINE}.hidden && {LINE}.textContent.includes('bob@b') && {LINE}.textContent")
            assert text.startswith("Link a: connected · outbox 0 · last contact "), text
            assert "remote agents: bob@b" in text and "error" not in text
            # A remote agent is a recipient in the send box.
            options = await page.evaluate("[...document.querySelectorAll('#send-to option')].map(o => o.value)")
            assert "bob@b" in options
            await page.screenshot(ARTIFACTS / "dashboard-federation-up.png")
            assert page.console_errors == [], page.console_errors
