"""Paths handled as a careful tool does: container.read_file refuses what is not a regular file without blocking;
container.write_atomic writes through symlinks, never replaces a device or FIFO, and cleans up after killed saves."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ruvector_lab import container
from ruvector_lab.errors import NotARegularFileError, RuvectorLabError


def _run_child(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, killed after ``timeout`` so a regression cannot hang the suite."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_read_file_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # in a child with a timeout: opening a FIFO that has no writer blocks forever without O_NONBLOCK
    done = _run_child("""
        import sys, time
        from ruvector_lab import container
        from ruvector_lab.errors import NotARegularFileError
        start = time.monotonic()
        try:
            container.read_file(sys.argv[1])
        except NotARegularFileError as exc:
            print("refused", round(time.monotonic() - start, 3), exc)
    """, str(fifo))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused") and "FIFO" in done.stdout
    assert float(done.stdout.split()[1]) < 1.0
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_read_file_refuses_devices_at_once(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    start = time.monotonic()
    with pytest.raises(NotARegularFileError, match="device"):
        container.read_file(path)  # /dev/zero read to the end would be a MemoryError
    assert time.monotonic() - start < 1.0


def test_read_file_refuses_a_directory_and_a_socket(tmp_path):
    with pytest.raises(NotARegularFileError, match="directory"):
        container.read_file(tmp_path)
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(NotARegularFileError, match="socket"):
            container.read_file(sock_path)


def test_read_file_errors_are_typed_and_oserrors_too(tmp_path):
    with pytest.raises(NotARegularFileError) as info:
        container.read_file(tmp_path)
    assert isinstance(info.value, RuvectorLabError) and isinstance(info.value, OSError)
    assert info.value.filename == str(tmp_path)
    with pytest.raises(FileNotFoundError):
        container.read_file(tmp_path / "missing")


def test_read_file_reads_regular_files_and_follows_symlinks(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read chunk
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "link").symlink_to("f")
    assert container.read_file(tmp_path / "f") == data
    assert container.read_file(tmp_path / "link") == data
    assert container.read_file("/proc/self/status" if os.path.exists("/proc/self/status") else tmp_path / "f")


def test_write_atomic_writes_through_a_symlink(tmp_path):
    real = tmp_path / "data" / "index.rvlab"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "current.rvlab"
    link.symlink_to(real)
    assert container.write_atomic(link, b"new") == real
    assert real.read_bytes() == b"new"
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert sorted(os.listdir(real.parent)) == ["index.rvlab"]  # the temporary file was beside the target


def test_write_atomic_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to("sub/target")
    container.write_atomic(link, b"x")
    assert (tmp_path / "sub" / "target").read_bytes() == b"x" and link.is_symlink()


def test_write_atomic_never_replaces_a_fifo_a_device_or_a_directory(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="FIFO"):
        container.write_atomic(fifo, b"x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(NotARegularFileError, match="directory"):
        container.write_atomic(tmp_path, b"x")
    link = tmp_path / "to-null"
    link.symlink_to("/dev/null")
    with pytest.raises(NotARegularFileError, match="device"):
        container.write_atomic(link, b"x")
    assert sorted(os.listdir(tmp_path)) == ["pipe", "to-null"]  # nothing replaced, no temporaries left


def test_write_atomic_keeps_the_mode_of_an_existing_file(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o640)
    container.write_atomic(target, b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "index.rvlab"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".index.rvlab.tmp-{_dead_pid()}-0a1b2c"
        live_other = tmp_path / f".index.rvlab.tmp-{sleeper.pid}-3d4e5f"
        live_self = tmp_path / f".index.rvlab.tmp-{os.getpid()}-6a7b8c"
        other_target = tmp_path / f".other.rvlab.tmp-{_dead_pid()}-9d0e1f"
        for path in (stale, live_other, live_self, other_target):
            path.write_bytes(b"partial save")
        container.write_atomic(target, b"saved")
        assert target.read_bytes() == b"saved"
        assert not stale.exists()
        assert live_other.exists() and live_self.exists()  # saves that may still be in progress
        assert other_target.exists()  # belongs to another file's saves
    finally:
        sleeper.kill()
        sleeper.wait()


_KILLED_SAVE = """
    import os, sys, time
    from pathlib import Path
    from ruvector_lab import container
    target, ready = sys.argv[1], Path(sys.argv[2])
    real_fsync = os.fsync
    def stuck_fsync(fd):  # the new bytes are written; hang where a kill -9 hurts most, before the rename
        ready.touch()
        time.sleep(600)
    os.fsync = stuck_fsync
    container.write_atomic(target, b"new contents " * 100_000)
"""


def test_a_killed_save_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    target = tmp_path / "index.rvlab"
    container.write_atomic(target, b"old contents")
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED_SAVE), str(target), str(ready)],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached its save"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert target.read_bytes() == b"old contents"
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".index.rvlab.tmp-")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == len(b"new contents ") * 100_000
    assert leftovers[0].name.startswith(f".index.rvlab.tmp-{proc.pid}-")
    container.write_atomic(target, b"next save")
    assert target.read_bytes() == b"next save"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.rvlab", "ready"]


def test_remove_stale_temporaries_reports_what_it_removed(tmp_path):
    target = tmp_path / "t"
    stale = tmp_path / f".t.tmp-{_dead_pid()}-abc"
    stale.write_bytes(b"x")
    (tmp_path / ".t.tmp-notapid-abc").write_bytes(b"x")  # not this naming: left alone
    assert container.remove_stale_temporaries(target) == [stale]
    assert (tmp_path / ".t.tmp-notapid-abc").exists()


def test_long_names_get_hashed_temporary_names(tmp_path):
    target = tmp_path / ("n" * 240)
    container.write_atomic(target, b"x")
    assert target.read_bytes() == b"x" and os.listdir(tmp_path) == [target.name]


def test_write_atomic_to_a_missing_folder_creates_it(tmp_path):
    target = tmp_path / "a" / "b" / "f"
    container.write_atomic(target, b"x")
    assert Path(target).read_bytes() == b"x"
