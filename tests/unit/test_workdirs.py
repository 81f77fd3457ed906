"""Attempts' working directories: kept only when exactly as made, handed on, removed at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.worker.executor import ExecSpec, Execution
from corral.worker.workdirs import Workdirs


def _made(root: Path, name: str = "attempt-x") -> str:
    path = root / name
    path.mkdir(mode=0o700)
    (path / "tmp").mkdir(mode=0o700)
    return str(path)


def test_a_directory_as_made_is_kept_and_handed_out_once(tmp_path: Path) -> None:
    w = Workdirs()
    path = _made(tmp_path)
    assert w.give(str(tmp_path), path, ("tmp",))
    assert w.take(str(tmp_path)) == path
    assert w.take(str(tmp_path)) is None
    assert w.take("/elsewhere") is None


def test_anything_left_behind_disqualifies(tmp_path: Path) -> None:
    w = Workdirs()
    cases = {}
    cases["file"] = _made(tmp_path, "a")
    Path(cases["file"], "out.txt").write_text("x")
    cases["in tmp"] = _made(tmp_path, "b")
    Path(cases["in tmp"], "tmp", "scratch").write_text("x")
    cases["mode"] = _made(tmp_path, "c")
    os.chmod(cases["mode"], 0o755)
    cases["tmp mode"] = _made(tmp_path, "d")
    os.chmod(Path(cases["tmp mode"], "tmp"), 0o777)
    cases["tmp gone"] = _made(tmp_path, "e")
    os.rmdir(Path(cases["tmp gone"], "tmp"))
    cases["tmp a link"] = _made(tmp_path, "f")
    os.rmdir(Path(cases["tmp a link"], "tmp"))
    os.symlink("/", Path(cases["tmp a link"], "tmp"))
    cases["missing"] = str(tmp_path / "nothing")
    for why, path in cases.items():
        assert not w.give(str(tmp_path), path, ("tmp",)), why
    assert w.take(str(tmp_path)) is None


def test_at_most_keep_and_none_after_close(tmp_path: Path) -> None:
    w = Workdirs(keep=2)
    paths = [_made(tmp_path, f"d{i}") for i in range(3)]
    assert [w.give(str(tmp_path), p, ("tmp",)) for p in paths] == [True, True, False]
    w.close()
    assert not Path(paths[0]).exists() and not Path(paths[1]).exists()
    assert not w.give(str(tmp_path), paths[2], ("tmp",))
    assert w.take(str(tmp_path)) is None


def test_attempts_reuse_a_clean_directory_and_get_a_new_one_after_a_mess(tmp_path: Path) -> None:
    w = Workdirs()
    seen: list[str] = []

    def run(command: str) -> str:
        out: list[str] = []
        spec = ExecSpec(command=command, workdir_root=str(tmp_path), workdirs=w)
        result = Execution(spec, lambda c: out.append(c.data)).run()
        assert result.outcome == "passed", result.reason
        text = "".join(out)
        seen.append(text.split()[0])
        return text

    first = run('pwd; ls -A; ls -A "$TMPDIR"')
    assert first.split() == [first.split()[0], "tmp"]  # empty but for an empty tmp/
    run("pwd; touch left-behind")
    assert seen[1] == seen[0]  # the first attempt's directory, handed on
    assert not Path(seen[1]).exists()  # something was left: removed, not kept
    third = run('pwd; ls -A; ls -A "$TMPDIR"')
    assert seen[2] != seen[1]
    assert third.split()[1:] == ["tmp"]
    w.close()
    assert list(tmp_path.iterdir()) == []


def test_more_ways_of_not_being_as_made_disqualify(tmp_path: Path) -> None:
    w = Workdirs()
    cases = {}
    cases["extra empty dir"] = _made(tmp_path, "a")
    Path(cases["extra empty dir"], "more").mkdir(mode=0o700)
    cases["dir in tmp"] = _made(tmp_path, "b")
    Path(cases["dir in tmp"], "tmp", "sub").mkdir(mode=0o700)
    cases["tmp a file"] = _made(tmp_path, "c")
    os.rmdir(Path(cases["tmp a file"], "tmp"))
    Path(cases["tmp a file"], "tmp").write_text("")
    cases["hidden file"] = _made(tmp_path, "d")
    Path(cases["hidden file"], ".hidden").write_text("x")
    cases["itself a link"] = str(tmp_path / "e")
    os.symlink(_made(tmp_path, "f"), cases["itself a link"])
    for why, path in cases.items():
        assert not w.give(str(tmp_path), path, ("tmp",)), why
    assert w.take(str(tmp_path)) is None
    # the link's target, as made, still qualifies on its own
    assert w.give(str(tmp_path), str(tmp_path / "f"), ("tmp",))


def test_a_root_claimed_is_cleared_of_what_a_dead_worker_left_and_held_against_another(
    tmp_path: Path,
) -> None:
    from corral.worker.workdirs import LOCK, claim_root

    root = tmp_path / "work"
    left = [root / "attempt-0123456789ab" / "tmp", root / "corral-task-x1"]
    for path in left:
        path.mkdir(parents=True)
    (left[0] / "out.txt").write_text("from a job whose worker died")
    locked = root / "attempt-fedcba987654" / "ro"
    locked.mkdir(parents=True)
    locked.chmod(0o500)  # a job left a directory it may not write
    other = root / "keep-me"  # not made by a worker: not the worker's to remove
    other.mkdir()

    fd = claim_root(str(root))
    assert fd is not None
    try:
        assert sorted(p.name for p in root.iterdir()) == [LOCK, "keep-me"]
        # a second worker of the same root while the first lives: nothing is removed
        made = root / "attempt-00000000beef"
        made.mkdir()
        assert claim_root(str(root)) is None
        assert made.exists()
    finally:
        os.close(fd)
    # once the first has let go (it died, say), the root is the next one's
    again = claim_root(str(root))
    assert again is not None
    os.close(again)
    assert not made.exists()


def test_a_worker_s_root_is_its_own_by_name_and_clears_what_its_dead_process_left(
    tmp_path: Path,
) -> None:
    from corral.worker.workdirs import worker_root

    first = worker_root(str(tmp_path), "web1")
    assert first.path == str(tmp_path / "corral-worker-web1") and not first.spare
    assert os.stat(first.path).st_mode & 0o777 == 0o700
    left = Path(first.path, "attempt-0123456789ab")
    left.mkdir()
    other = worker_root(str(tmp_path), "web2")  # another worker: its own, nothing of web1's
    assert other.path == str(tmp_path / "corral-worker-web2")
    assert left.exists()
    first.release()  # the process died: the kernel let go of its lock
    again = worker_root(str(tmp_path), "web1")
    assert again.path == first.path and not again.spare
    assert not left.exists()
    assert Path(other.path).exists()
    for root in (again, other):
        root.release()
    assert Path(again.path).exists()  # kept for the next start


def test_a_worker_s_root_taken_by_a_live_namesake_gives_it_a_spare_one(tmp_path: Path) -> None:
    from corral.worker.workdirs import worker_root

    first = worker_root(str(tmp_path), "twin")
    running = Path(first.path, "attempt-00000000beef")
    running.mkdir()
    second = worker_root(str(tmp_path), "twin")
    try:
        assert second.spare and second.namesake and second.path != first.path
        assert Path(second.path).name.startswith("corral-worker-twin-")
        assert running.exists()  # the live one's job keeps its directory
    finally:
        second.release()
        first.release()
    assert not Path(second.path).exists()  # a spare one goes with its worker
    assert Path(first.path).exists()


def test_a_worker_s_root_made_by_someone_else_or_a_link_is_not_used(tmp_path: Path) -> None:
    from corral.worker.workdirs import worker_root

    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "corral-worker-linked").symlink_to(target)
    linked = worker_root(str(tmp_path), "linked")
    try:
        assert linked.spare and not linked.namesake
        assert not linked.path.startswith(str(target))
        assert list(target.iterdir()) == []  # nothing made or claimed through the link
    finally:
        linked.release()
    if os.geteuid() == 0:  # another account's directory needs root to make
        theirs = tmp_path / "corral-worker-theirs"
        theirs.mkdir(mode=0o777)
        os.chown(theirs, 65534, 65534)
        found = worker_root(str(tmp_path), "theirs")
        try:
            assert found.spare and found.path != str(theirs)
            assert list(theirs.iterdir()) == []
        finally:
            found.release()


def test_a_worker_s_root_is_absolute_whatever_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.worker.workdirs import worker_root

    monkeypatch.chdir(tmp_path)
    root = worker_root("work", "w")
    try:
        assert root.path == str(tmp_path / "work" / "corral-worker-w")
    finally:
        root.release()


def test_a_worker_s_root_for_jobs_run_as_another_user_is_searchable_not_listable(
    tmp_path: Path,
) -> None:
    from corral.worker.workdirs import worker_root

    made = worker_root(str(tmp_path), "w")
    made.release()
    again = worker_root(str(tmp_path), "w", 0o711)
    try:
        assert os.stat(again.path).st_mode & 0o777 == 0o711
    finally:
        again.release()
