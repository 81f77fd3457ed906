"""The one rule for services tests need: a loud skip locally, a failure when CI requires them."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def test_a_missing_service_is_a_loud_skip(
    missing_service: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        missing_service("sshd", "port 2222 refused")
    assert "SERVICE UNAVAILABLE: sshd: port 2222 refused" in str(info.value)
    monkeypatch.setenv("CORRAL_REQUIRE_SERVICES", "0")
    with pytest.raises(pytest.skip.Exception):
        missing_service("sshd", "port 2222 refused")


def test_a_missing_service_fails_when_required(
    missing_service: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception) as info:
        missing_service("chromium", "not installed")
    assert "SERVICE UNAVAILABLE: chromium: not installed" in str(info.value)
    assert "CORRAL_REQUIRE_SERVICES=1" in str(info.value)
