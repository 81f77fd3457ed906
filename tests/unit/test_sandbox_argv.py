"""The bwrap command line and the limits wrapper, built without running anything."""

from __future__ import annotations

import signal

from corral.worker.limits import Applied, Offer
from corral.worker.sandbox import Sandbox, argv_for, hidden_paths


def test_bwrap_argv_read_only_system_private_workdir_no_network() -> None:
    argv = argv_for(Sandbox("/usr/bin/bwrap"), "/w/attempt-1", "/w/attempt-1/inputs", ["py"])
    assert argv[0] == "/usr/bin/bwrap"
    text = " ".join(argv)
    assert "--ro-bind / /" in text
    assert "--bind /w/attempt-1 /w/attempt-1" in text
    assert "--ro-bind /w/attempt-1/inputs /w/attempt-1/inputs" in text
    assert "--chdir /w/attempt-1" in text
    for flag in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[-2:] == ["--", "py"]
    # the inputs are bound after the working directory, so they stay read-only inside it
    assert text.index("--ro-bind /w/attempt-1/inputs") > text.index("--bind /w/attempt-1 ")


def test_bwrap_argv_network_only_when_asked() -> None:
    argv = argv_for(Sandbox("bwrap", network=True), "/w/a", "", ["py"])
    assert argv.index("--share-net") > argv.index("--unshare-all")
    assert "--ro-bind" in argv and argv.count("--ro-bind") == 1  # no inputs given


def test_hidden_directories_are_covered_before_the_workdir_is_bound() -> None:
    argv = argv_for(Sandbox("bwrap", hide=("/root", "/w", "relative", "/")), "/w/a", "", ["py"])
    text = " ".join(argv)
    assert "--tmpfs /root" in text and "--tmpfs /w" in text
    assert "--tmpfs relative" not in text and "--tmpfs / " not in text
    assert text.index("--tmpfs /w") < text.index("--bind /w/a /w/a")


def test_hidden_paths_keeps_existing_directories_only(tmp_path: object) -> None:
    assert hidden_paths(str(tmp_path), str(tmp_path), "/no/such/dir", "", "/") == (str(tmp_path),)


NO_CGROUP = Offer(prlimit="/usr/bin/prlimit", memory_cgroup=None, pids_cgroup=None)


def test_limits_wrapper_uses_rlimits_without_cgroups() -> None:
    applied = Applied(
        {"cpu": 2.5, "memory": 1024, "procs": 5, "fsize": 2048, "nofile": 64}, NO_CGROUP
    )
    argv = applied.wrap(["job", "arg"])
    assert argv == [
        "/usr/bin/prlimit",
        "--cpu=3:4",
        "--as=1024",
        "--nproc=5",
        "--fsize=2048",
        "--nofile=64",
        "--",
        "job",
        "arg",
    ]


def test_limits_wrapper_joins_cgroups_first_and_leaves_them_memory_and_procs() -> None:
    applied = Applied({"memory": 1024, "procs": 5, "cpu": 1}, NO_CGROUP)
    applied.groups = {"memory": "/cg/m/x", "pids": "/cg/p/x"}
    argv = applied.wrap(["job"])
    assert argv[:3] == ["/bin/sh", "-c", 'echo $$ > "$1" && echo $$ > "$2" && shift 2 && exec "$@"']
    assert argv[4:6] == ["/cg/m/x/cgroup.procs", "/cg/p/x/cgroup.procs"]
    assert "--as=1024" not in argv and "--nproc=5" not in argv
    assert argv[-4:] == ["/usr/bin/prlimit", "--cpu=1:2", "--", "job"]


def test_no_wrapper_when_nothing_needs_it() -> None:
    assert Applied({"memory": 10}, Offer(None, None, None)).wrap(["job"]) == ["job"]


def test_the_limit_that_ended_a_job_is_named() -> None:
    a = Applied({"cpu": 10.0, "fsize": 1024**3}, NO_CGROUP)
    assert a.explain(-signal.SIGXCPU, 10.0, False) == ("killed: CPU limit 10 s", True)
    assert a.explain(-signal.SIGKILL, 11.0, False) == ("killed: CPU limit 10 s", True)
    assert a.explain(-signal.SIGKILL, 1.0, False) is None  # killed by someone else
    assert a.explain(128 + signal.SIGXFSZ, 0.0, True) == ("killed: file size limit 1 GiB", True)
    assert a.explain(128 + signal.SIGXFSZ, 0.0, False) is None  # a plain exit code
    assert a.explain(0, 0.0, False) is None
