"""`hive_trio.testing` as its users meet it: a pytest plugin loaded from the installed package, its
fixtures in someone else's test suite, and an import that costs nothing until used."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ("pytester",)

USER_TESTS = """
import json
import pytest
import trio

@pytest.fixture
def hive_agents():
    return ["alice", "bob"]

@pytest.mark.trio
async def test_alice_hears_bob(hive):
    async with hive.open_agent("alice") as alice, hive.open_agent("bob") as bob:
        await bob.call("send", to="alice", body="hi")
        got = await alice.call("recv", wait_seconds=5)
        assert [(m["from"], m["body"]) for m in got["messages"]] == [("bob", "hi")]
    assert (await hive.host("list"))["agents"] == ["alice", "bob"]

@pytest.mark.trio
async def test_deadlines_run_on_the_mock_clock(hive, hive_autojump_clock):
    async with hive.open_agent("alice") as alice:
        await alice.call("ask", question="still there?", ttl_seconds=3600, default="yes")
        await trio.sleep(3601)
        event = json.loads((await alice.call("recv", wait_seconds=60))["messages"][0]["body"])
        assert (event["event"], event["answer"]) == ("question_answered", "yes")

@pytest.mark.trio
async def test_each_test_gets_a_fresh_hive(hive):
    assert hive.directory.exists()
    assert (await hive.host("list"))["agents"] == ["alice", "bob"]
"""


@pytest.mark.slow
def test_a_users_suite_gets_the_fixtures_from_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_importing_the_plugin_loads_none_of_the_hive() -> None:
    probe = (
        "import sys, hive_trio.testing; "
        "heavy = [m for m in ('hive_trio.daemon', 'hive_trio.core.coordinator',"
        " 'hive_trio.store.database', 'apsw', 'mcp')"
        " if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
