"""`Settings.memory_allocator`: when `predictors serve` starts itself again with jemalloc preloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from predictors import allocator, cli
from predictors.allocator import JEMALLOC_CONF, AllocatorUnavailable, relaunch_environment

LIBRARY = "libjemalloc.so.2"


def test_auto_and_jemalloc_relaunch_with_it_preloaded_and_configured() -> None:
    for choice in ("auto", "jemalloc"):
        environment = relaunch_environment(choice, {"PATH": "/bin"}, LIBRARY, loaded=False)
        assert environment == {"PATH": "/bin", "LD_PRELOAD": LIBRARY, "MALLOC_CONF": JEMALLOC_CONF}


def test_a_preload_and_a_configuration_of_the_users_are_kept() -> None:
    environment = relaunch_environment("auto", {"LD_PRELOAD": "libmine.so", "MALLOC_CONF": "narenas:1"},
                                       LIBRARY, loaded=False)
    assert environment == {"LD_PRELOAD": f"libmine.so {LIBRARY}", "MALLOC_CONF": "narenas:1"}


def test_nothing_to_do_when_loaded_or_the_system_allocator_is_asked_for() -> None:
    assert relaunch_environment("auto", {}, LIBRARY, loaded=True) is None
    assert relaunch_environment("jemalloc", {}, LIBRARY, loaded=True) is None
    assert relaunch_environment("system", {}, LIBRARY, loaded=False) is None


def test_auto_without_jemalloc_runs_on_the_system_allocator_and_jemalloc_is_refused() -> None:
    assert relaunch_environment("auto", {}, None, loaded=False) is None
    with pytest.raises(AllocatorUnavailable, match="apt-get install libjemalloc2"):
        relaunch_environment("jemalloc", {}, None, loaded=False)


def test_a_preload_that_did_not_take_is_not_tried_again() -> None:
    """A relaunched process whose LD_PRELOAD names jemalloc and still lacks it: no second start (no loop)."""
    environ = {"LD_PRELOAD": LIBRARY}
    assert relaunch_environment("auto", environ, LIBRARY, loaded=False) is None
    with pytest.raises(AllocatorUnavailable, match="still not loaded"):
        relaunch_environment("jemalloc", environ, LIBRARY, loaded=False)


def test_jemalloc_loaded_reads_the_process_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert not allocator.jemalloc_loaded(maps)
    maps.write_text(maps.read_text() + "7f02-7f03 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert allocator.jemalloc_loaded(maps)
    assert not allocator.jemalloc_loaded(tmp_path / "absent")


def test_the_environment_loads_jemalloc_in_a_new_process() -> None:
    """What `serve` execs with really gives a process on jemalloc (the library `make test` installs)."""
    library = allocator.find_jemalloc()
    assert library is not None, "libjemalloc2 is missing: ci/install-system-packages.sh installs it"
    environment = relaunch_environment("jemalloc", dict(os.environ), library, loaded=allocator.jemalloc_loaded())
    assert environment is not None
    probe = "from predictors import allocator; print(allocator.in_use())"
    child = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True,
                           check=True)
    assert (child.stdout.strip(), child.stderr) == ("jemalloc", "")
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "system"


def test_serve_exits_2_when_jemalloc_is_asked_for_and_missing(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: None)
    monkeypatch.setattr(allocator, "jemalloc_loaded", lambda: False)
    assert cli.main(["serve", "--memory-allocator", "jemalloc", "--model-repository", "/nonexistent"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "memory_allocator is jemalloc but it is not installed" in error
