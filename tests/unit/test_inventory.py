"""The fleet's inventory: hosts by site and role from the config file, every problem at once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from corral.errors import ConfigError
from corral.fleet.inventory import load_inventory, parse_inventory

GOOD = """
[roles.app]
vars = { TIER = "front", WORKERS = 4 }

[hosts.web1]
ssh = "deploy@web1.example"
roles = ["app", "primary"]
port = 2222
python = "/usr/bin/python3.11"
vars = { WORKERS = 8, DEBUG = true }

[hosts.web1-again]
ssh = "deploy@web1.example"
roles = ["batch"]

[hosts.db1]
ssh = "db1.example"
containment = "process-group"
"""


def test_hosts_with_roles_vars_and_defaults() -> None:
    inv = parse_inventory(tomllib.loads(GOOD), "corral.toml")
    assert [h.site for h in inv.hosts] == ["web1", "web1-again", "db1"]
    web1 = inv.host("web1")
    assert web1.ssh == "deploy@web1.example"
    assert web1.roles == ("app", "primary")
    assert web1.port == 2222 and web1.python == "/usr/bin/python3.11"
    # role vars first, the host's own win
    assert dict(web1.vars) == {"TIER": "front", "WORKERS": "8", "DEBUG": "true"}
    assert web1.labels == {"site": "web1", "role": "app,primary"}
    # the same machine under another site name is another worker
    again = inv.host("web1-again")
    assert again.ssh == web1.ssh and again.labels == {"site": "web1-again", "role": "batch"}
    db1 = inv.host("db1")
    assert db1.port is None and db1.python == "python3" and db1.labels == {"site": "db1"}
    assert db1.containment == "process-group" and web1.containment == "auto"


def test_every_problem_is_reported_at_once_with_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "corral.toml"
    path.write_text(
        """
[roles.app]
vars = { TIER = ["a"] }
colour = "red"

[hosts.web1]
ssh = "deploy@web1"
port = 70000
identity = "/no/such/key"
sshh = "typo"

[hosts.web2]
roles = "app"
vars = { "9LIVES" = "x" }
containment = "cgroups"

[hosts."bad name"]
ssh = "-oProxyCommand=evil"
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    problems = caught.value.problems
    want = [
        "roles.app.colour: unknown key",
        "roles.app.vars.TIER: expected a string",
        "hosts.web1.port: expected a TCP port, got 70000",
        "hosts.web1.identity: no such file /no/such/key",
        "hosts.web1.sshh: unknown key",
        "hosts.web2.ssh: expected",
        "hosts.web2.roles: expected a list",
        "hosts.web2.vars.9LIVES: a variable name",
        "hosts.web2.containment: expected one of auto, cgroup-v1, cgroup-v2, process-group",
        "hosts.bad name: a site name holds",
        "hosts.bad name.ssh: expected",
    ]
    for fragment in want:
        assert any(p.startswith(f"{path}: {fragment}") for p in problems), (fragment, problems)
    assert len(problems) == len(want)


def test_no_file_means_no_hosts_and_bad_toml_names_the_file(tmp_path: Path) -> None:
    assert not load_inventory(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[hosts.web1\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_inventory(bad)


# roles that choose what ends their hosts' jobs' processes
CHOOSING_ROLES = """
[roles.deploy]
containment = "process-group"

[roles.batch]
containment = "cgroup-v2"
"""


def test_a_roles_containment_reaches_its_hosts_and_a_hosts_own_wins() -> None:
    text = """
[hosts.web1]
ssh = "web1"
roles = ["deploy", "app"]

[hosts.web2]
ssh = "web2"
roles = ["deploy"]
containment = "auto"

[hosts.db1]
ssh = "db1"
"""
    inv = parse_inventory(tomllib.loads(CHOOSING_ROLES + text), "corral.toml")
    assert inv.host("web1").containment == "process-group"
    assert inv.host("web2").containment == "auto"
    assert inv.host("db1").containment == "auto"


def test_roles_that_choose_differently_for_a_host_are_reported() -> None:
    text = """
[roles.odd]
containment = 1

[hosts.web1]
ssh = "web1"
roles = ["deploy", "batch"]

[hosts.web2]
ssh = "web2"
roles = ["deploy", "batch"]
containment = "process-group"
"""
    with pytest.raises(ConfigError) as caught:
        parse_inventory(tomllib.loads(CHOOSING_ROLES + text), "corral.toml")
    assert caught.value.problems == [
        "corral.toml: roles.odd.containment: expected one of auto, cgroup-v1, cgroup-v2, "
        "process-group",
        "corral.toml: hosts.web1.containment: its roles choose cgroup-v2 and process-group: say "
        "which for the host",
    ]
