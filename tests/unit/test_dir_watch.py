"""Whether a task directory may have changed since the last look (inotify on Linux)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from corral import dir_watch
from corral.dir_watch import DirWatch
from corral.registry import Registry

linux = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


@linux
def test_a_look_is_needed_only_after_something_changed(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("one")
    watch = DirWatch([tmp_path])
    assert watch.may_have_changed()  # the first look
    assert not watch.may_have_changed()
    (tmp_path / "a.py").write_text("two")  # written in place
    assert watch.may_have_changed()
    assert not watch.may_have_changed()
    os.utime(tmp_path / "a.py", ns=(1, 2))  # only its times
    assert watch.may_have_changed()
    (tmp_path / "b.py").write_text("new")
    (tmp_path / "b.py").rename(tmp_path / "c.py")
    assert watch.may_have_changed()
    (tmp_path / "c.py").unlink()
    assert watch.may_have_changed()
    assert not watch.may_have_changed()


@linux
def test_a_directory_that_is_not_there_is_looked_at_every_time(tmp_path: Path) -> None:
    later = tmp_path / "later"
    watch = DirWatch([tmp_path, later])
    assert watch.may_have_changed()
    assert watch.may_have_changed()  # it cannot be watched: always maybe
    later.mkdir()
    assert watch.may_have_changed()  # seen to exist, and watched from now on
    assert not watch.may_have_changed()
    (later / "t.py").write_text("x")
    assert watch.may_have_changed()
    for f in later.iterdir():
        f.unlink()
    later.rmdir()  # its watch goes with it
    assert watch.may_have_changed()
    assert watch.may_have_changed()


@linux
def test_at_least_once_a_second_the_answer_is_maybe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a network filesystem changed from another machine queues nothing here
    watch = DirWatch([tmp_path])
    assert watch.may_have_changed()
    assert not watch.may_have_changed()
    monkeypatch.setattr(dir_watch, "RECHECK", 0.0)
    assert watch.may_have_changed()


def test_without_inotify_every_look_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dir_watch, "INotify", None)
    watch = DirWatch([tmp_path])
    assert watch.may_have_changed()
    assert watch.may_have_changed()


TASK = "import corral\n@corral.task\ndef t(): return {!r}\n"


@linux
def test_the_registry_sees_a_change_at_once_and_otherwise_does_not_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "t.py").write_text(TASK.format(1))
    registry = Registry([tmp_path])
    first = registry.lookup_all(["t"])["t"].sha256
    scans = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda d: scans.append(d) or real(d))
    for _ in range(5):
        assert registry.lookup_all(["t"])["t"].sha256 == first
    assert scans == []  # nothing changed: the kernel said so, no scan
    (tmp_path / "t.py").write_text(TASK.format(2))
    assert registry.lookup_all(["t"])["t"].sha256 != first  # the very next look
    assert len(scans) == 1


@linux
def test_a_task_file_that_is_a_symlink_is_looked_at_every_time(tmp_path: Path) -> None:
    # the watch is on the task directory: a write to a link's target elsewhere queues nothing
    elsewhere = tmp_path / "elsewhere"
    tasks = tmp_path / "tasks"
    elsewhere.mkdir()
    tasks.mkdir()
    (elsewhere / "t.py").write_text(TASK.format(1))
    (tasks / "t.py").symlink_to(elsewhere / "t.py")
    registry = Registry([tasks])
    first = registry.lookup_all(["t"])["t"].sha256
    (elsewhere / "t.py").write_text(TASK.format("a longer one"))
    assert registry.lookup_all(["t"])["t"].sha256 != first
