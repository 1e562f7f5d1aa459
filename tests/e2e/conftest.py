"""End-to-end fixtures: real `quorumfs serve` daemons on real FUSE mounts.

A test asks for `member` (one running member, mounted) or `members` (a
factory: members.start(name, *args) -> Member) and works on `member.mnt`
with shell commands (`member.sh("echo v > f")`) and Python os calls.

Every member gets its own data dir, mount dir and log file under the test's
tmp_path. Teardown always leaves no mount and no process behind (lazy
unmount, then SIGTERM, then SIGKILL), even when the test failed, and fails
the test if a daemon logged an error-level line, unless the test is marked
`@pytest.mark.expect_errors`.

Run as root from the repo root: /usr/bin/python3 -m pytest -q tests/e2e
(after `make`; the binaries are taken from bin/).
"""
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qfs import (  # noqa: E402
    HELPER,
    QUORUMFS,
    Member,
    daemon_pids,
    is_mounted,
    lazy_unmount,
    quorumfs_mounts,
)

_started = []  # every Member of the session, for the last-resort sweep
TEST_TIMEOUT = 120  # seconds per test; the whole suite takes well under that


_own_basetemp = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    global _own_basetemp
    config.addinivalue_line(
        "markers", "expect_errors: the daemon is expected to log error-level lines")
    # pytest's default basetemp, /tmp/pytest-of-USER/pytest-N, is shared by
    # every pytest on the machine, and each one deletes the older numbered
    # dirs: a concurrent run would rm -rf through our live mounts. Each run
    # gets a private one instead (removed at the end when everything passed).
    if not config.option.basetemp:
        _own_basetemp = tempfile.mkdtemp(prefix="quorumfs-e2e-")
        config.option.basetemp = _own_basetemp


def _require_binaries():
    for b in (QUORUMFS, HELPER):
        if not os.access(b, os.X_OK):
            pytest.fail(f"{b} is missing: run `make` first", pytrace=False)


class Members:
    """Factory fixture: starts members and tears all of them down."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.all = []

    def create(self, name="n1", *args, opts=None):
        """A Member not started yet (for tests that expect start to fail)."""
        _require_binaries()
        m = Member(self.tmp_path / name, name, list(args), opts)
        self.all.append(m)
        _started.append(m)
        return m

    def start(self, name="n1", *args, opts=None):
        m = self.create(name, *args, opts=opts)
        m.start()
        return m

    def teardown(self):
        for m in self.all:
            m.cleanup()


@pytest.fixture
def members(request, tmp_path):
    ms = Members(tmp_path)
    fired = threading.Event()

    def watchdog():
        # A daemon that stops answering would hang the test in a syscall:
        # killing it makes every blocked FUSE call fail with ENOTCONN.
        fired.set()
        for m in ms.all:
            m.abort()

    timer = threading.Timer(TEST_TIMEOUT, watchdog)
    timer.daemon = True
    timer.start()
    yield ms
    timer.cancel()
    ms.teardown()
    problems = []
    if fired.is_set():
        problems.append(f"test ran over {TEST_TIMEOUT} s: its daemons were killed")
    for m in ms.all:
        leftovers = daemon_pids(m.mnt)
        if leftovers:
            problems.append(f"{m.name}: daemon processes still alive: {leftovers}")
        if is_mounted(m.mnt):
            problems.append(f"{m.name}: {m.mnt} still mounted")
    if request.node.get_closest_marker("expect_errors") is None:
        for m in ms.all:
            bad = m.error_lines()
            if bad:
                problems.append(f"{m.name} logged unexpected errors ({m.log_path}):\n  "
                                + "\n  ".join(bad[:20]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def member(members):
    """One running single-member store, mounted at member.mnt."""
    return members.start("n1")


@pytest.fixture(scope="session", autouse=True)
def _sweep(request, tmp_path_factory):
    """Last resort: whatever a crashed fixture left behind is unmounted and killed."""
    base = str(tmp_path_factory.getbasetemp().resolve())
    yield
    for m in _started:
        m.cleanup()
    left = [mnt for mnt in quorumfs_mounts() if mnt.startswith(base + "/")]
    for mnt in left:
        lazy_unmount(mnt)
        for pid in daemon_pids(mnt):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if _own_basetemp and request.session.testsfailed == 0 and not left and \
            not any(m.startswith(base + "/") for m in quorumfs_mounts()):
        shutil.rmtree(_own_basetemp, ignore_errors=True)
