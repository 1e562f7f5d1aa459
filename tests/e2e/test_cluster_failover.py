"""Crashes in a three-member cluster: kill -9 of the leader, a follower that
restarts and catches up by log, a wiped one that catches up by snapshot, and
concurrent writers through a leader kill (SPEC §3.2, §3.8, §4; issue 3
deliverable 6)."""
import os
import statistics
import threading
import time

import pytest

from cluster import ETIMEDOUT, cluster, timed_write  # noqa: F401 (fixture)
from qfs import errname, lazy_unmount, read_file, wait_until, write_file

SNAPSHOT_INSTALLED = "installed the leader's snapshot"
NAMES3 = ["n1", "n2", "n3"]


def test_leader_kill9_new_leader_accepts_writes(cluster):
    """Five rounds: kill -9 the leader, write through a surviving member until
    one write is acknowledged, then restart the old leader as a follower."""
    c = cluster.start()
    times = []
    for rnd in range(5):
        old = c.wait_leader()
        rest = [n for n in c.live() if n != old]
        for k in range(10):
            assert write_file(c.m(rest[k % 2]).p(f"r{rnd}_{k}"), f"{rnd}.{k}") is None
        t0 = c.kill9(old, wait=False)
        errs = []
        k = 0
        while True:
            w = rest[k % 2]
            k += 1
            err, took = timed_write(c.m(w).p(f"after{rnd}"), f"after {rnd}")
            if err is None:
                break
            assert err == ETIMEDOUT, f"write on {w} during failover: {errname(err)}"
            errs.append(f"{w}: ETIMEDOUT after {took:.2f} s")
            assert time.monotonic() - t0 < 10, errs
        took = time.monotonic() - t0
        times.append(took)
        new = c.wait_leader(among=rest)
        print(f"round {rnd}: killed leader {old}; first acknowledged write (on {w}) "
              f"{took * 1000:.0f} ms after SIGKILL; new leader {new}; failed tries: {errs}")
        assert new != old
        assert took < 5.0, f"no write acknowledged for {took:.1f} s after the leader died"
        for n in rest:
            for j in range(10):
                assert read_file(c.m(n).p(f"r{rnd}_{j}")) == f"{rnd}.{j}".encode()
            assert read_file(c.m(n).p(f"after{rnd}")) == f"after {rnd}".encode()
        c.reap(old)
        c.restart(old)
        assert c.role(old) in ("follower", "candidate"), c.status(old)
        c.converge()
        assert c.role(old) == "follower", c.status(old)
    print(f"failover after kill -9 of the leader: median {statistics.median(times) * 1000:.0f} "
          f"ms, max {max(times) * 1000:.0f} ms over {len(times)} rounds")
    t = c.assert_same()
    assert len([k for k in t if k.startswith("after")]) == 5


def _churn(c, writers, n_ops, tag):
    """n_ops puts, overwrites, deletes, a mkdir and a subtree rename through
    `writers`; returns {rel: bytes} of the files that must exist afterwards."""
    model = {}
    c.m(writers[0]).sh(f"mkdir -p {tag}/a/b")
    for i in range(n_ops):
        w = c.m(writers[i % len(writers)])
        rel = f"{tag}/a/b/k{i % 40}"
        if i % 7 == 6 and rel in model:
            os.unlink(w.p(rel))
            del model[rel]
        else:
            data = os.urandom(1 + (i * 131) % 9000)
            assert write_file(w.p(rel), data) is None
            model[rel] = data
    c.m(writers[-1]).sh(f"mv {tag}/a {tag}/moved && mkdir {tag}/fresh")
    return {k.replace(f"{tag}/a/", f"{tag}/moved/", 1): v for k, v in model.items()}


def _check_files(c, names, model):
    for n in names:
        for rel, data in model.items():
            assert read_file(c.m(n).p(rel)) == data, f"{n}: {rel}"


def test_killed_follower_restarts_and_catches_up_by_log(cluster):
    c = cluster.start()
    before = _churn(c, ["n1", "n2", "n3"], 30, "before")
    f = c.followers()[0]
    rev_before = c.converge()
    c.kill9(f)
    rest = [n for n in c.live()]
    model = _churn(c, rest, 200, "during")
    rev = c.converge(rest)
    assert rev > rev_before + 150
    c.restart(f)
    t = c.assert_same()
    assert c.status(f)["revision"] == rev
    assert c.role(f) == "follower"
    _check_files(c, [f], {**before, **model})
    assert "during/a" not in t and t["during/fresh"] == ("d",)
    # by the log: no snapshot was needed (the default --snapshot-entries is 10000)
    assert c.status(f)["snapshot_index"] == 0
    assert SNAPSHOT_INSTALLED not in c.m(f).log_text(run=True)


def test_wiped_follower_catches_up_by_snapshot(cluster):
    """The data dir of a follower is removed while it is down; the leader has
    compacted its log (--snapshot-entries 20), so it must send a snapshot."""
    c = cluster.start(extra=["--snapshot-entries", "20"])
    f = c.followers()[0]
    before = _churn(c, ["n1", "n2", "n3"], 60, "before")
    c.kill9(f)
    c.wipe(f)
    rest = c.live()
    model = _churn(c, rest, 80, "during")
    rev = c.converge(rest)
    # snapshots are written in the background: give the last one time
    assert wait_until(lambda: all(c.status(n)["snapshot_index"] >= 100 for n in rest), 10), \
        [c.status(n) for n in rest]
    c.restart(f)
    t = c.assert_same()
    st = c.status(f)
    assert st["revision"] == rev and st["role"] == "follower", st
    assert st["snapshot_index"] >= 100, st
    assert SNAPSHOT_INSTALLED in c.m(f).log_text(run=True)
    _check_files(c, [f], {**before, **model})
    assert t["during/fresh"] == ("d",)
    # and it keeps up afterwards
    assert write_file(c.m(f).p("after"), b"x") is None
    c.assert_same()


def test_wiped_follower_restarted_at_once_catches_up(cluster):
    """A follower wiped and restarted at once, with nothing written
    meanwhile: the leader still counts it as holding the whole log, so only
    the follower's rejection of what comes next can tell it otherwise; a
    write through the wiped follower itself must still succeed."""
    c = cluster.start(extra=["--snapshot-entries", "20"])
    f = c.followers()[0]
    before = _churn(c, ["n1", "n2", "n3"], 60, "before")
    c.converge(c.live())
    c.kill9(f)
    c.wipe(f)
    c.restart(f)
    assert write_file(c.m(f).p("after"), b"x") is None
    c.assert_same()
    _check_files(c, [f], {**before, "after": b"x"})


def test_removed_member_replaced_by_a_fresh_member_via_snapshot(cluster):
    """member remove, its data dir gone; a fresh member joins with --join and
    gets everything by snapshot, is promoted, and carries the quorum."""
    c = cluster.start(extra=["--snapshot-entries", "20"])
    f = c.followers()[0]
    model = _churn(c, ["n1", "n2", "n3"], 100, "data")
    c.cli("member", "remove", f)
    assert f not in c.member_list()
    assert wait_until(lambda: not c.running(f), 5), f"{f} still running after its removal"
    assert c.m(f).proc.returncode == 0
    c.wipe(f)
    rev = c.converge()
    j = c.join("n4", 4, extra=["--snapshot-entries", "20"])
    assert c.member_list()["n4"] == "learner"
    c.converge()
    assert SNAPSHOT_INSTALLED in j.log_text(run=True)
    assert c.status("n4")["snapshot_index"] >= 100
    c.cli("member", "promote", "n4")
    assert c.member_list()["n4"] == "voter"
    t = c.assert_same()
    assert c.status("n4")["revision"] >= rev
    _check_files(c, ["n4"], model)
    # n4 is now needed: with one of the two old members down, writes still commit
    down = [n for n in c.live() if n != "n4"][0]
    c.kill9(down)
    up = c.live()
    deadline = time.monotonic() + 10
    while (err := write_file(c.m("n4").p("with_n4"), b"quorum")) is not None:
        assert err == ETIMEDOUT and time.monotonic() < deadline, errname(err)
    for n in up:
        assert read_file(c.m(n).p("with_n4")) == b"quorum"
    assert t["data/fresh"] == ("d",)


def test_concurrent_writers_with_leader_kill(cluster):
    """3 mounts x 4 threads write their own keys; the leader is killed in the
    middle. Afterwards (the old leader restarted) every member holds the same
    data and revision, no acknowledged write is lost, and every key holds the
    last acknowledged value or a later attempt whose outcome was unknown."""
    c = cluster.start()
    names = ["n1", "n2", "n3"]
    threads_per = 4
    for n in names:
        for t in range(threads_per):
            os.mkdir(c.m(n).p(f"w_{n}_{t}"))
    victim = c.leader()
    killed = threading.Event()
    stop = threading.Event()
    logs = {}

    def writer(n, t):
        log = []
        logs[(n, t)] = log
        m = c.m(n)
        seq = 0
        while not stop.is_set():
            key = f"w_{n}_{t}/k{seq % 5}"
            val = f"{n}/{t}/{seq}/".encode() + b"x" * ((seq * 377) % 5000)
            err = write_file(m.p(key), val)
            log.append((key, val, err, killed.is_set()))
            seq += 1
            if err is not None and n == victim and killed.is_set():
                return  # its mount is dead
    ths = [threading.Thread(target=writer, args=(n, t), daemon=True)
           for n in names for t in range(threads_per)]
    for th in ths:
        th.start()
    time.sleep(1.5)
    t_kill = c.kill9(victim, wait=False)
    killed.set()
    rest = [n for n in names if n != victim]
    new = c.wait_leader(among=rest, not_=victim)
    # keep writing for 2 s after the new leader is known
    time.sleep(2.0)
    stop.set()
    c.reap(victim, unmount=False)  # its writers must not see the directory below
    for th in ths:
        th.join(30)
        assert not th.is_alive(), "a writer is stuck"
    lazy_unmount(c.m(victim).mnt)
    c.restart(victim)
    c.assert_same()
    acked = sum(1 for log in logs.values() for _, _, e, _ in log if e is None)
    failed = [(n, t, k, errname(e)) for (n, t), log in logs.items()
              for k, _, e, _ in log if e is not None]
    print(f"killed leader {victim}, new leader {new}; {acked} acknowledged writes, "
          f"{len(failed)} failed: {sorted({f[3] for f in failed})}")
    assert acked > 100
    # surviving mounts: only ETIMEDOUT is an acceptable failure
    bad = [f for f in failed if f[0] != victim and f[3] != "ETIMEDOUT"]
    assert not bad, bad[:10]
    acked_after_kill = sum(1 for (n, t), log in logs.items() if n != victim
                           for _, _, e, k in log if e is None and k)
    assert acked_after_kill > 0, "no write was acknowledged after the kill"
    unknown_final = 0
    for (n, t), log in logs.items():
        for key in {k for k, _, _, _ in log}:
            attempts = [(v, e) for k, v, e, _ in log if k == key]
            last_ok = max((i for i, (_, e) in enumerate(attempts) if e is None), default=-1)
            allowed = {v for v, _ in attempts[max(last_ok, 0):]}
            if last_ok < 0:
                allowed.add(None)
            for m in names:
                try:
                    got = read_file(c.m(m).p(key))
                except FileNotFoundError:
                    got = None
                assert got in allowed, (
                    f"{m}: {key} holds {got[:20] if got else got!r}; the last acknowledged "
                    f"write was {attempts[last_ok][0][:20] if last_ok >= 0 else None!r}")
                if last_ok >= 0 and got != attempts[last_ok][0]:
                    unknown_final += 1
    print(f"keys whose final value is a later write that failed: {unknown_final // 3}; "
          f"time from kill to the end: {time.monotonic() - t_kill:.1f} s")


def test_kill9_during_remote_writes_the_daemon_exits(cluster):
    """kill -9 of a member while another member writes: the process is gone
    within 5 s every time (8 rounds; the member is restarted in between)."""
    c = cluster.start()
    for rnd in range(8):
        victim = NAMES3[rnd % 3]
        writer = NAMES3[(rnd + 1) % 3]
        stop = threading.Event()

        def write_loop():
            k = 0
            while not stop.is_set():
                write_file(c.m(writer).p(f"f{k % 20}"), os.urandom(1 + k % 3000))
                k += 1
        th = threading.Thread(target=write_loop, daemon=True)
        th.start()
        time.sleep(0.3)
        c.kill9(victim)
        stop.set()
        th.join(30)
        c.restart(victim)
        c.converge()
    assert not c.stuck_kills, c.stuck_kills
