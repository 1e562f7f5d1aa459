"""`quorumfs watch` (SPEC §2.2, §3.6; issue 4 deliverable 4): ordered by
revision, no gaps, no duplicates, resumable with --rev, a clear error for a
compacted start, and slow watchers never slow writers.

Each test runs one member with --listen-client on a free loopback port and
changes it through its mount (or the CLI); the revision each change
produced is read back from user.quorumfs.revision on the root, and the
watch output is compared against those revisions.
"""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib

import pytest

from cluster import cluster, free_base  # noqa: F401  (cluster is a fixture)
from qfs import QUORUMFS, wait_until, write_file


def client_addr():
    return f"127.0.0.1:{free_base() + 3}"


def start(members, *args):
    ep = client_addr()
    m = members.start("n1", "--listen-client", ep, *map(str, args))
    m.ep = ep
    return m


def cli(m, *args, timeout=30):
    return subprocess.run([str(QUORUMFS), *map(str, args), "--endpoints", m.ep],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout)


class Watch:
    """`quorumfs watch ... -w json` in the background; events collected by a
    thread as parsed JSON objects."""

    def __init__(self, m, key, *args, endpoints=None, stdout=None):
        cmd = [str(QUORUMFS), "watch", key, *map(str, args), "-w", "json",
               "--endpoints", endpoints or m.ep]
        self.to_file = stdout is not None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=stdout or subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events = []
        self.err = ""
        self.threads = []
        if not self.to_file:
            self.threads.append(threading.Thread(target=self._read, daemon=True))
        self.threads.append(threading.Thread(target=self._read_err, daemon=True))
        for t in self.threads:
            t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def _read_err(self):
        self.err = self.proc.stderr.read()

    def wait_rev(self, rev, timeout=15):
        """Waits until an event of revision >= rev arrived; returns the events."""
        assert wait_until(lambda: self.events and self.events[-1]["revision"] >= rev,
                          timeout), f"no event up to revision {rev}: {self.events}"
        return list(self.events)

    def wait_exit(self, timeout=30):
        rc = self.proc.wait(timeout)
        for t in self.threads:
            t.join(5)
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.wait_exit()


@pytest.fixture
def watches():
    ws = []

    def make(*args, **kw):
        w = Watch(*args, **kw)
        ws.append(w)
        return w

    yield make
    for w in ws:
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait(10)


def revs(events):
    return [e["revision"] for e in events]


def assert_contiguous(events, first, last):
    """Every revision first..last appears (watching "/": each revision has
    at least one event), in order, and each event once."""
    rs = revs(events)
    assert rs == sorted(rs), rs
    assert sorted(set(rs)) == list(range(first, last + 1)), (first, last, rs)
    keyed = [(e["revision"], e["type"], e["key"]) for e in events]
    assert len(keyed) == len(set(keyed)), f"duplicates: {keyed}"


def value(e):
    import base64
    return base64.b64decode(e["value"])


@pytest.fixture
def m(members):
    return start(members)


def test_put_overwrite_delete_rename_mkdir_through_the_mount(m, watches):
    start_rev = m.revision() + 1
    everything = watches(m, "/", "--prefix", "--rev", start_rev)
    exact = watches(m, "/conf/a", "--rev", start_rev)
    steps = []

    def step(name, fn):
        fn()
        steps.append((name, m.revision()))

    step("mkdir", lambda: os.mkdir(m.p("conf")))
    step("create", lambda: write_file(m.p("conf/a"), "v1\n"))
    step("overwrite", lambda: write_file(m.p("conf/a"), "v2\n"))
    step("rename", lambda: os.rename(m.p("conf/a"), m.p("conf/b")))
    step("delete", lambda: os.unlink(m.p("conf/b")))
    step("rmdir", lambda: os.rmdir(m.p("conf")))
    last = steps[-1][1]
    events = everything.wait_rev(last)
    assert_contiguous(events, start_rev, last)
    assert events[-1]["revision"] == last

    prev = start_rev - 1
    by_step = {}
    for name, rev in steps:
        assert rev > prev, f"{name} produced no revision"
        by_step[name] = [e for e in events if prev < e["revision"] <= rev]
        prev = rev
    mk = by_step["mkdir"]
    assert [(e["type"], e["key"], e["kind"]) for e in mk] == [("PUT", "/conf", "dir")]
    put = [e for e in by_step["create"] if e["key"] == "/conf/a"][-1]
    assert put["type"] == "PUT" and value(put) == b"v1\n"
    over = [e for e in by_step["overwrite"] if e["key"] == "/conf/a"][-1]
    assert value(over) == b"v2\n" and over["version"] > put["version"]
    assert over["create_revision"] == put["create_revision"]
    assert over["mod_revision"] == over["revision"] == steps[2][1]
    # A rename is one revision: the old key goes, the new one comes.
    rn = by_step["rename"]
    assert {(e["type"], e["key"]) for e in rn} == {("DELETE", "/conf/a"), ("PUT", "/conf/b")}
    assert len({e["revision"] for e in rn}) == 1
    assert value([e for e in rn if e["type"] == "PUT"][0]) == b"v2\n"
    assert [(e["type"], e["key"]) for e in by_step["delete"]] == [("DELETE", "/conf/b")]
    assert [(e["type"], e["key"]) for e in by_step["rmdir"]] == [("DELETE", "/conf")]

    # Without --prefix: that key only.
    ex = exact.wait_rev(steps[3][1])
    assert all(e["key"] == "/conf/a" for e in ex)
    assert [(e["revision"], e["type"]) for e in ex] == \
        [(e["revision"], e["type"]) for e in events if e["key"] == "/conf/a"]


def test_human_output_one_line_per_event(m):
    r1 = int(cli(m, "put", "/k", "one\ttwo\n").stdout.split("=")[1])
    cli(m, "put", "/d/x", "y")
    r3 = int(cli(m, "del", "/k").stdout.split("=")[1])
    # Stops by itself: `| head` closes the pipe and the next line fails.
    r = subprocess.run(f"{QUORUMFS} watch / --prefix --rev {r1} --endpoints {m.ep} | head -n 4",
                       shell=True, capture_output=True, text=True, timeout=20)
    assert r.stdout.splitlines() == [
        f"{r1} PUT /k one\\ttwo\\n",
        f"{r1 + 1} PUT /d/",
        f"{r1 + 1} PUT /d/x y",
        f"{r3} DELETE /k",
    ]


def test_rev_replays_history_exactly(m, watches):
    written = []  # (revision, key, value) as produced by each write
    for i in range(30):
        key = f"/h/k{i % 7}"
        r = cli(m, "put", key, f"v{i}")
        assert r.returncode == 0, r.stderr
        written.append((int(r.stdout.split("=")[1]), key, f"v{i}".encode()))
    first, last = written[0][0], written[-1][0]
    # The first put also made /h: everything else is one event per revision.
    full = watches(m, "/h", "--prefix", "--rev", first).wait_rev(last)
    puts = [(e["revision"], e["key"], value(e)) for e in full if e["kind"] == "file"]
    assert puts == written
    assert_contiguous(full, first, last)
    # From the middle: exactly the tail, not one event more or less.
    mid = written[12][0]
    tail = watches(m, "/h", "--prefix", "--rev", mid).wait_rev(last)
    assert tail == [e for e in full if e["revision"] >= mid]
    # A start in the future waits for it.
    future = watches(m, "/h/k0", "--rev", last + 3)
    time.sleep(0.5)
    assert future.events == []
    for i in range(4):
        cli(m, "put", "/h/k0", f"f{i}")
    ev = future.wait_rev(last + 4)
    assert revs(ev) == [last + 3, last + 4]


def test_a_revision_larger_than_a_frame_arrives_whole_once(m, watches):
    """Renaming a directory of 24 files of 128 KiB is one revision of 50
    events and 3 MiB: more than a frame holds and more than a watcher may
    queue, so the member cuts it and resumes inside it."""
    os.mkdir(m.p("big"))
    files = {f"f{i:02}": os.urandom(128 << 10) for i in range(24)}
    for name, data in files.items():
        assert write_file(m.p(f"big/{name}"), data) is None
    first = m.revision() + 1
    live = watches(m, "/", "--prefix", "--rev", first)
    os.rename(m.p("big"), m.p("moved"))
    rev = m.revision()
    for w in (live, watches(m, "/", "--prefix", "--rev", rev)):
        w.wait_rev(rev)
        assert wait_until(lambda: len(w.events) >= 50, 10), len(w.events)
        time.sleep(0.3)
        events = list(w.events)
        assert revs(events) == [rev] * 50
        assert sorted((e["type"], e["key"]) for e in events) == sorted(
            [("DELETE", "/big"), ("PUT", "/moved")] +
            [("DELETE", f"/big/{n}") for n in files] + [("PUT", f"/moved/{n}") for n in files])
        for e in events:
            if e["type"] == "PUT" and e["kind"] == "file":
                assert value(e) == files[e["key"].rsplit("/", 1)[1]]


def test_compacted_start_is_a_clear_error(members):
    keep = 10
    m = start(members, "--auto-compact-revisions", keep)
    for i in range(50):
        assert write_file(m.p("k"), f"{i}\n") is None
    # Compaction runs in the background: wait until it has caught up with
    # the last write (revision 50, keep 10), so the number below is final.
    assert wait_until(lambda: m.status()["compacted_revision"] >= m.status()["revision"] - keep,
                      10), m.status()
    oldest = m.status()["compacted_revision"]
    r = cli(m, "watch", "/k", "--rev", 3, timeout=20)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"revision 3 has been compacted; the oldest available is {oldest}" in lines[0]
    assert r.stdout == ""
    # The oldest revision left still replays.
    r = subprocess.run(f"{QUORUMFS} watch / --prefix --rev {oldest} --endpoints {m.ep} "
                       f"| head -n 1", shell=True, capture_output=True, text=True, timeout=20)
    assert r.stdout.startswith(f"{oldest} PUT /k "), (r.stdout, r.stderr, st)


def test_resume_across_member_restart(m, watches):
    first = m.revision() + 1
    w = watches(m, "/", "--prefix", "--rev", first)
    for i in range(10):
        assert write_file(m.p(f"a{i}"), f"{i}\n") is None
    before = m.revision()
    w.wait_rev(before)
    m.kill9()
    assert w.wait_exit(15) != 0
    seen = list(w.events)
    n = seen[-1]["revision"]
    assert n == before
    lines = w.err.strip().splitlines()
    assert len(lines) == 1, w.err
    assert f"connection to {m.ep} lost after revision {n}; resume with --rev {n + 1}" \
        in lines[0]
    m.restart()
    for i in range(10):
        assert write_file(m.p(f"b{i}"), f"{i}\n") is None
    last = m.revision()
    rest = watches(m, "/", "--prefix", "--rev", n + 1).wait_rev(last)
    assert_contiguous(seen + rest, first, last)
    assert [e["key"] for e in rest if e["type"] == "PUT"] == [f"/b{i}" for i in range(10)]


def watch_frame(key, start_rev, prefix=True):
    """A raw WATCH request (client_proto.h), for a client that never reads."""
    payload = (struct.pack("<I", len(key) + 1) + key.encode() + b"\0" +
               struct.pack("<IQ", 1 if prefix else 0, start_rev))
    return struct.pack("<IBBHII", 0x43534651, 1, 10, 0, len(payload),
                       zlib.crc32(payload)) + payload


def timed_writes(m, n, size, tag):
    data = os.urandom(size)
    t = time.monotonic()
    for i in range(n):
        assert write_file(m.p(f"{tag}{i % 10}"), data) is None
    return time.monotonic() - t


def test_slow_watcher_does_not_slow_writes(m):
    n, size = 200, 64 << 10
    baseline = timed_writes(m, n, size, "base")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = m.ep.rsplit(":", 1)
    s.connect((host, int(port)))
    s.sendall(watch_frame("/", m.revision() + 1))
    try:
        time.sleep(0.3)
        slowed = timed_writes(m, n, size, "slow")
        # 12.8 MB of events the watcher never read: far beyond what the
        # sockets hold, so the member had to hold back, not the writer.
        assert slowed < 2 * baseline + 3, (baseline, slowed)
    finally:
        s.close()
    # The member is fine and still serves watches.
    rev = m.revision()
    r = subprocess.run(f"{QUORUMFS} watch / --prefix --rev {rev} --endpoints {m.ep} "
                       f"| head -n 1", shell=True, capture_output=True, timeout=20)
    assert r.stdout.startswith(f"{rev} PUT /slow".encode()), r.stderr
    print(f"{n} writes of {size} B: {baseline:.2f} s alone, {slowed:.2f} s with a "
          f"watcher that does not read")


def test_stuck_watcher_is_cancelled_and_resumes(members, tmp_path, watches):
    keep = 100  # a stuck watcher is cancelled past keep/2 revisions of lag
    m = start(members, "--auto-compact-revisions", keep)
    first = m.revision() + 1
    out = open(tmp_path / "watch.out", "w")
    w = watches(m, "/", "--prefix", "--rev", first, stdout=out)
    time.sleep(0.3)
    w.proc.send_signal(signal.SIGSTOP)
    data = os.urandom(256 << 10)
    cancelled = re.compile(r"watch cancelled: fell behind at revision (\d+); "
                           r"resume with --rev (\d+)")
    try:
        # Fast until the sockets are full and the lag is past the bound,
        # then slowly until the member has noticed (it needs the watcher
        # stuck for a second), so compaction does not catch up with it.
        for i in range(400):
            assert write_file(m.p(f"f{i % 10}"), data) is None
            if cancelled.search(m.log_text()):
                break
            if i > 60:
                time.sleep(0.1)
        else:
            raise AssertionError("the stuck watcher was never cancelled")
    finally:
        w.proc.send_signal(signal.SIGCONT)
    assert w.wait_exit(30) != 0
    out.close()
    msg = cancelled.search(w.err)
    assert msg, w.err
    assert len(w.err.strip().splitlines()) == 1, w.err
    n = int(msg.group(1))
    assert int(msg.group(2)) == n
    seen = [json.loads(line) for line in (tmp_path / "watch.out").read_text().splitlines()]
    assert seen and seen[-1]["revision"] == n - 1
    assert_contiguous(seen, first, n - 1)
    # What it advised works: no gap, no duplicate.
    last = m.revision()
    rest = watches(m, "/", "--prefix", "--rev", n).wait_rev(last)
    assert_contiguous(seen + rest, first, last)


def test_cluster_watch_through_followers_fails_over_without_gaps(cluster, watches):
    c = cluster.start()
    leader = c.leader()
    a, b = c.followers()[:2]
    lm = c.m(leader)
    first = lm.revision() + 1
    w = watches(lm, "/", "--prefix", "--rev", first, endpoints=f"{c.client(a)},{c.client(b)}")
    for i in range(20):
        assert write_file(lm.p(f"x{i}"), f"{i}\n") is None
    w.wait_rev(lm.revision())
    c.kill9(a)
    for i in range(20):
        assert write_file(lm.p(f"y{i}"), f"{i}\n") is None
    last = lm.revision()
    events = w.wait_rev(last)
    assert_contiguous(events, first, last)
    assert [e["key"] for e in events if e["type"] == "PUT"] == \
        [f"/x{i}" for i in range(20)] + [f"/y{i}" for i in range(20)]
    assert w.proc.poll() is None, w.err
    w.stop()
    assert f"connection to {c.client(a)} lost after revision" in w.err, w.err
