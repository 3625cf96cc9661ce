"""The browser tests skip on a machine without Chromium, and fail instead where CI demands a browser."""

from __future__ import annotations

from pathlib import Path

import cdp_driver
import pytest


def test_a_missing_chromium_skips_with_how_to_enable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdp_driver, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(cdp_driver, "REQUIRE_BROWSER", False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        cdp_driver.need_chromium()


def test_a_missing_chromium_fails_when_a_browser_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdp_driver, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(cdp_driver, "REQUIRE_BROWSER", True)
    with pytest.raises(pytest.fail.Exception, match="HIVE_TESTS_REQUIRE_BROWSER"):
        cdp_driver.need_chromium()


def test_an_executable_browser_passes_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdp_driver, "CHROMIUM", "/bin/sh")
    monkeypatch.setattr(cdp_driver, "REQUIRE_BROWSER", True)
    cdp_driver.need_chromium()


def test_the_gates_variables_are_not_daemon_settings() -> None:
    # The daemon refuses every unknown HIVE_TRIO_* variable, and CI exports the gate's variable to every
    # daemon the tests start: under that prefix it stopped each of them ("unknown setting").

    from hive_trio.rules.config import ENV_PREFIX

    source = Path(cdp_driver.__file__).read_text()
    for name in ("HIVE_TESTS_REQUIRE_BROWSER", "HIVE_TESTS_CHROMIUM"):
        assert name in source and not name.startswith(ENV_PREFIX)
