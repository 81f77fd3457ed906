"""Shared test helpers: the one rule for services a test needs (skip locally, fail in CI)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import pytest

# CI sets this: a service a test needs (PostgreSQL, sshd, chromium, ...) must be there.
REQUIRE_SERVICES_VAR = "CORRAL_REQUIRE_SERVICES"


def services_required() -> bool:
    return os.environ.get(REQUIRE_SERVICES_VAR, "").strip() not in ("", "0", "false", "no")


def require_service(name: str, reason: str) -> NoReturn:
    """A service a test needs is missing: skip loudly, or fail when CI says services are required.

    Call it from a fixture or test once you know `name` is unreachable; it never returns.
    """
    message = f"SERVICE UNAVAILABLE: {name}: {reason}"
    if services_required():
        pytest.fail(f"{message} ({REQUIRE_SERVICES_VAR}=1, so this is a failure, not a skip)")
    pytest.skip(f"{message} (set {REQUIRE_SERVICES_VAR}=1 to make this a failure)")


@pytest.fixture(scope="session")
def missing_service() -> Callable[[str, str], NoReturn]:
    """`require_service` as a fixture, for conftests and tests that cannot import this module
    (a bare `pytest` does not put the repository root on sys.path): call it when a service
    is unreachable, e.g. `missing_service("postgresql", "cannot connect to ...")`."""
    return require_service
