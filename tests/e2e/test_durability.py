"""Durability and recovery: kill -9, clean restart, damaged WAL (SPEC §3.2, §3.8, §5)."""
import errno
import json
import os
import re
import signal

import pytest

from qfs import (errno_of, is_mounted, quorumfs_mounts, read_file, wait_until, wal_records,
                 WAL_HEADER, write_file)


def test_kill9_loses_no_closed_write(members):
    m = members.start("n1")
    for i in range(50):
        assert write_file(m.p(f"k{i:02d}"), f"value {i}\n") is None
    rev = m.revision()
    m.kill9()
    m.restart()
    for i in range(50):
        assert read_file(m.p(f"k{i:02d}")) == f"value {i}\n".encode(), f"k{i:02d} lost"
    assert m.revision() >= rev


def test_kill9_after_overwrites_and_deletes(members):
    m = members.start("n1")
    m.sh("mkdir -p d/e && for i in $(seq 10); do echo $i > d/e/f$i; done")
    m.sh("echo changed > d/e/f3 && rm d/e/f4 && mv d/e d/moved && echo tail >> d/moved/f5")
    inodes = {n: os.stat(m.p(f"d/moved/{n}")).st_ino for n in os.listdir(m.p("d/moved"))}
    rev = m.revision()
    m.kill9()
    m.restart()
    assert m.revision() == rev
    assert read_file(m.p("d/moved/f3")) == b"changed\n"
    assert read_file(m.p("d/moved/f5")) == b"5\ntail\n"
    assert not os.path.exists(m.p("d/moved/f4"))
    assert not os.path.exists(m.p("d/e"))
    assert {n: os.stat(m.p(f"d/moved/{n}")).st_ino for n in os.listdir(m.p("d/moved"))} \
        == inodes


def test_restart_over_dead_mount(members):
    """kill -9 leaves 'Transport endpoint is not connected'; a restart takes the mount back."""
    m = members.start("n1")
    m.sh("echo v > k")
    m.kill9(unmount=False)
    assert is_mounted(m.mnt)
    assert errno_of(os.stat, m.p("k")) == errno.ENOTCONN
    m.restart()
    assert read_file(m.p("k")) == b"v\n"
    assert quorumfs_mounts().count(str(m.mnt)) == 1, "the dead mount is still stacked below"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_restart_keeps_data_and_revision(members, sig):
    m = members.start("n1")
    m.sh("mkdir conf && echo a > conf/x && echo b > conf/y && ln -s conf/x lx")
    rev, ino = m.revision(), os.stat(m.p("conf/x")).st_ino
    m.stop(sig)
    m.restart()
    assert m.revision() == rev, "a restart neither loses nor invents revisions"
    assert m.sh("cat conf/x conf/y lx").stdout == "a\nb\na\n"
    assert os.stat(m.p("conf/x")).st_ino == ino
    m.sh("echo c > conf/z")
    assert m.revision() == rev + 1, "revisions continue where they stopped"


def test_json_log_format(members):
    m = members.start("n1", "--log-format", "json", "--log-level", "debug")
    m.sh("echo v > k")
    m.stop()
    lines = m.log_text().splitlines()
    assert lines
    for line in lines:
        rec = json.loads(line)
        assert rec["level"] in ("debug", "info", "warn") and rec["member"] == "n1", line


def test_restart_after_snapshot(members):
    """With --snapshot-entries small, recovery is snapshot + WAL tail."""
    m = members.start("n1", "--snapshot-entries", "10")
    for i in range(35):
        assert write_file(m.p(f"s{i}"), str(i)) is None
    rev = m.revision()
    m.kill9()
    m.restart()
    assert m.revision() == rev
    assert [read_file(m.p(f"s{i}")) for i in range(35)] == [str(i).encode() for i in range(35)]
    m.stop()
    m.restart()
    assert read_file(m.p("s34")) == b"34"


def _write_entries(m, n):
    for i in range(n):
        assert write_file(m.p(f"e{i:02d}"), f"entry {i}\n") is None


@pytest.mark.expect_errors
def test_corrupted_wal_middle_is_refused(members):
    m = members.start("n1")
    _write_entries(m, 20)
    m.kill9()  # no shutdown snapshot: the entries are only in the WAL
    target = None
    for seg in m.wal_files():
        recs = wal_records(seg)
        if len(recs) >= 5:
            target = seg, recs
    assert target, f"no WAL segment with >= 5 records in {m.wal_files()}"
    seg, recs = target
    off, length = recs[len(recs) // 2]
    pos = off + WAL_HEADER + length // 2
    data = bytearray(seg.read_bytes())
    data[pos] ^= 0x5A
    seg.write_bytes(bytes(data))

    m.spawn()
    rc = m.wait_exit(15)
    assert rc != 0, "a WAL with a bad CRC in the middle must refuse to start"
    lines = [l for l in m.log_text(run=True).splitlines()
             if seg.name in l and "offset" in l]
    assert lines, f"no line names {seg.name} and an offset:\n{m.log_text(run=True)}"
    named = {str(off), hex(off), str(off + WAL_HEADER), hex(off + WAL_HEADER)}
    assert any(n in re.findall(r"0x[0-9a-f]+|\d+", lines[0]) for n in named), \
        f"the offset {off} of the damaged record is not named: {lines[0]}"
    assert not m.ready()


def test_torn_wal_tail_is_truncated_and_logged(members):
    m = members.start("n1")
    _write_entries(m, 20)
    m.kill9()
    seg = m.wal_files()[-1]
    recs = wal_records(seg)
    assert recs, f"{seg} holds no records"
    off, length = recs[-1]
    end = off + WAL_HEADER + length
    with open(seg, "r+b") as f:
        f.truncate(end - 3)

    m.restart()
    for i in range(19):
        assert read_file(m.p(f"e{i:02d}")) == f"entry {i}\n".encode()
    warns = [l for l in m.warn_lines() if "torn" in l.lower() or "truncat" in l.lower()]
    assert warns, f"no warning about the torn tail:\n{m.log_text(run=True)}"
    # Writes go on after the repair, and survive another crash.
    assert write_file(m.p("after"), "ok") is None
    m.kill9()
    m.restart()
    assert read_file(m.p("after")) == b"ok"


def test_kill9_under_concurrent_writers(members):
    """Group commit: every write whose close() returned before the kill survives it."""
    import threading
    m = members.start("n1")
    m.sh("mkdir w")
    acked, stop = {}, threading.Event()

    def writer(t):
        i = 0
        while not stop.is_set():
            key, val = f"w/t{t:02d}", f"{t}:{i}"
            if write_file(m.p(key), val) is not None:
                return  # the daemon is gone
            acked[key] = val
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(32)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) == 32 and m.revision() > 500, 20)
        snapshot = dict(acked)
        m.proc.kill()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    m.proc.wait(15)
    # Writers may have got one more ack between the snapshot and the kill.
    final = dict(acked)
    m.kill9()
    m.restart()
    assert len(snapshot) == 32
    for key, val in final.items():
        got = read_file(m.p(key)).decode()
        t, i = got.split(":")
        assert int(i) >= int(val.split(":")[1]), f"{key}: acked {val}, recovered {got}"
