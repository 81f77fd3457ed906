"""Object settings layer like every other: defaults < corral.toml < CORRAL_* < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import load
from corral.errors import ConfigError
from corral.objects.backend import open_backend
from corral.objects.directory import DirectoryBackend


def test_defaults_keep_objects_in_a_directory_under_home(tmp_path: Path) -> None:
    s = load({}, env={"CORRAL_HOME": str(tmp_path)})
    assert s.objects == ""
    assert s.max_object_size == 5 * 1024**3
    backend = open_backend(s.objects, s.home)
    assert isinstance(backend, DirectoryBackend)
    assert backend.root == tmp_path / "objects"


def test_toml_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        'objects = "s3://from-toml"\n'
        's3_endpoint = "http://127.0.0.1:1"\n'
        's3_access_key = "toml-key"\n'
        's3_secret_key = "toml-secret"\n'
        "max-object-size = 1000\n"
    )
    env = {"CORRAL_HOME": str(tmp_path), "CORRAL_S3_ACCESS_KEY": "env-key"}
    s = load({}, env=env)
    assert (s.objects, s.s3_access_key, s.s3_secret_key, s.max_object_size) == (
        "s3://from-toml",
        "env-key",
        "toml-secret",
        1000,
    )
    env["CORRAL_OBJECTS"] = "s3://from-env/prefix"
    assert load({}, env=env).objects == "s3://from-env/prefix"
    assert load({"objects": "/srv/flag"}, env=env).objects == "/srv/flag"
    assert "toml-secret" not in repr(s)  # settings get logged; the secret never does


def test_bad_object_settings_are_reported_together(tmp_path: Path) -> None:
    env = {"CORRAL_HOME": str(tmp_path), "CORRAL_MAX_OBJECT_SIZE": "0"}
    with pytest.raises(ConfigError) as info:
        load({"objects": "ftp://x"}, env=env)
    problems = info.value.problems
    assert any("objects: expected a directory or s3://" in p for p in problems)
    assert any("MAX_OBJECT_SIZE" in p.upper() for p in problems)


def test_a_directory_that_cannot_be_made_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        open_backend(str(blocker / "objects"), tmp_path)
    assert "objects: cannot use" in info.value.message
