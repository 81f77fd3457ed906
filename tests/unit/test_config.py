"""Settings: defaults < corral.toml < CORRAL_* variables < flags; every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import Settings, corral_home, load
from corral.errors import ConfigError


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "corral.toml"
    path.write_text(text)
    return path


def env_for(home: Path, **variables: str) -> dict[str, str]:
    return {"CORRAL_HOME": str(home), **variables}


def problems_of(*args: object, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.status == 500
    return info.value.problems


def test_defaults(home: Path) -> None:
    s = load({}, env=env_for(home))
    assert s == Settings(home=home)
    assert s.port == 8765
    assert s.lease_ttl == 30.0
    assert s.db_url == f"sqlite:///{(home / 'corral.db').absolute()}"
    assert s.token_file == home / "token"


def test_home_from_flag_env_or_user_home(tmp_path: Path) -> None:
    assert corral_home({"CORRAL_HOME": str(tmp_path)}) == tmp_path
    assert corral_home({}) == Path.home() / ".corral"
    assert load({"home": str(tmp_path / "f")}, env=env_for(tmp_path)).home == tmp_path / "f"


def test_each_layer_overrides_the_one_below(home: Path) -> None:
    write(home, 'port = 9000\nlease-ttl = "5s"\nhost = "0.0.0.0"\nlog_level = "debug"\n')
    s = load({}, env=env_for(home))
    assert (s.port, s.lease_ttl, s.host, s.log_level) == (9000, 5.0, "0.0.0.0", "debug")
    s = load({}, env=env_for(home, CORRAL_PORT="9100", CORRAL_LEASE_TTL="1m"))
    assert (s.port, s.lease_ttl, s.host) == (9100, 60.0, "0.0.0.0")
    s = load(
        {"port": 9200, "lease_ttl": "2s", "host": None},
        env=env_for(home, CORRAL_PORT="9100", CORRAL_LEASE_TTL="1m"),
    )
    assert (s.port, s.lease_ttl, s.host) == (9200, 2.0, "0.0.0.0")  # None flags do not count


def test_an_explicit_config_file(tmp_path: Path, home: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("port = 7000\n")
    write(home, "port = 9000\n")
    assert load({}, config_file=str(other), env=env_for(home)).port == 7000


def test_coercions(home: Path) -> None:
    write(home, 'local_labels = ["os=linux", "role=app"]\ndemo = true\n')
    s = load({}, env=env_for(home, CORRAL_MAX_BODY="1024", CORRAL_LOCAL_SLOTS="0"))
    assert s.local_labels == ("os=linux", "role=app")
    assert s.demo is True
    assert (s.max_body, s.local_slots, s.slots) == (1024, 0, 0)
    s = load({}, env=env_for(home, CORRAL_LOCAL_LABELS="a=b,c=d", CORRAL_DEMO="off"))
    assert s.local_labels == ("a=b", "c=d")
    assert s.demo is False
    assert load({"local_slots": 3}, env=env_for(home)).slots == 3


def test_sections_of_other_parts_are_left_alone(home: Path) -> None:
    write(home, '[hosts.web1]\nssh = "deploy@web1"\nroles = ["app"]\n[secrets]\nk = "v"\n')
    assert load({}, env=env_for(home)).port == 8765


def test_task_directories_from_file_env_and_flags(home: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write(home, f'tasks = ["{a}"]\n')
    assert load({}, env=env_for(home)).tasks == (str(a),)
    assert load({}, env=env_for(home, CORRAL_TASKS=f"{a},{b}")).tasks == (str(a), str(b))
    assert load({"tasks": (str(b),)}, env=env_for(home)).tasks == (str(b),)
    assert problems_of({"tasks": (str(tmp_path / "nope"),)}, env=env_for(home)) == [
        f"tasks: no such directory {tmp_path / 'nope'}"
    ]


def test_every_problem_at_once_with_where_it_came_from(home: Path) -> None:
    path = write(home, 'port = "x"\nbogus = 1\nlease-ttl = "soon"\n')
    found = problems_of(
        {"sweep_interval": "fast"},
        env=env_for(home, CORRAL_DEMO="maybe", CORRAL_MAX_BODY="big"),
    )
    assert sorted(found) == sorted(
        [
            f"{path}: unknown setting 'bogus'",
            f"{path}: port: expected a whole number, got 'x'",
            f'{path}: lease-ttl: expected a duration like "20m", "90s" or "1h30m", got \'soon\'',
            "CORRAL_DEMO: expected true or false, got 'maybe'",
            "CORRAL_MAX_BODY: expected a size like \"512MiB\", got 'big'",
            '--sweep-interval: expected a duration like "20m", "90s" or "1h30m", got \'fast\'',
        ]
    )
    with pytest.raises(ConfigError) as info:
        load({"sweep_interval": "fast"}, env=env_for(home))
    assert str(path) in str(info.value)
    assert str(info.value).startswith("invalid configuration:")


def test_a_toml_syntax_error_names_the_file_and_line(home: Path) -> None:
    path = write(home, "port = 1\nhost = \n")
    [problem] = problems_of({}, env=env_for(home))
    assert problem.startswith(f"{path}: ")
    assert "line 2" in problem


def test_a_missing_explicit_file(tmp_path: Path, home: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert problems_of({}, config_file=str(missing), env=env_for(home)) == [
        f"{missing}: no such file"
    ]


def test_a_missing_default_file_is_fine(home: Path) -> None:
    assert not (home / "corral.toml").exists()
    assert load({}, env=env_for(home)).port == 8765


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"port": 0}, "port: 0 is not a TCP port"),
        ({"port": 70000}, "port: 70000 is not a TCP port"),
        ({"port": True}, "--port: expected a whole number"),
        ({"host": 5}, "--host: expected a string, got int"),
        ({"tls_cert": "/nonexistent/cert.pem"}, "tls: give both --tls-cert and --tls-key"),
        ({"lease_ttl": 0}, "--lease-ttl: expected a positive duration"),
        ({"local_labels": [1]}, "--local-labels: expected a list of strings"),
    ],
)
def test_bad_values(home: Path, flags: dict[str, object], words: str) -> None:
    found = problems_of(flags, env=env_for(home))
    assert any(words in p for p in found), found


def test_tls_files_must_exist(tmp_path: Path, home: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    found = problems_of(
        {"tls_cert": str(cert), "tls_key": str(tmp_path / "key.pem")}, env=env_for(home)
    )
    assert found == [f"tls-key: no such file {tmp_path / 'key.pem'}"]
    key = tmp_path / "key.pem"
    key.write_text("x")
    s = load({"tls_cert": str(cert), "tls_key": str(key)}, env=env_for(home))
    assert (s.tls_cert, s.tls_key) == (str(cert), str(key))


def test_sizes_are_written_as_people_write_them(home: Path) -> None:
    write(home, 'max_object_size = "2GiB"\nlog_limit = "64MiB"\n')
    s = load({"max_body": "512KiB"}, env=env_for(home))
    assert (s.max_object_size, s.log_limit, s.max_body) == (2 * 1024**3, 64 * 1024**2, 512 * 1024)
    assert load({}, env=env_for(home, CORRAL_LOG_LIMIT="1000")).log_limit == 1000
    with pytest.raises(ConfigError) as info:
        load({"log_limit": "lots"}, env=env_for(home))
    assert any("--log-limit" in p and "512MiB" in p for p in info.value.problems)
