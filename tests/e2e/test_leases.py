"""Leases through the filesystem (SPEC §3.4, §3.5, §3.7; issue 4 deliverables
2, 3 and 6): `setfattr -n user.quorumfs.ttl` grants and attaches, the lease
xattr attaches and detaches, touch/write/the same ttl/`touch
/.quorumfs/leases/ID` renew, `rm /.quorumfs/leases/ID` revokes, and expiry
is decided by the leader and committed once, so every member deletes the
keys at the same revision and inotify reports it on every mount. A leader
killed with -9 during a lease's life neither expires it early nor keeps it
past TTL + election timeout + 1 s.

Times are measured with time.monotonic() around the system calls: a lower
bound from before the grant call, an upper bound from after it returned."""
import errno
import json
import math
import os
import time

import pytest

from cluster import ELECTION_MS, cluster  # noqa: F401  (cluster is a fixture)
from qfs import errname, errno_of, read_file, wait_until, write_file
from test_inotify import Watcher, Watchers

TTL_X = "user.quorumfs.ttl"
LEASE_X = "user.quorumfs.lease"
NAMES = ["n1", "n2", "n3"]
ELECTION = ELECTION_MS / 1000
# Deletions and their replays only: the ATTRIB of each setfattr is not what
# these tests are about.
DELETE_EVENTS = ("delete", "delete_self", "create", "moved_from", "moved_to", "close_write")


def grant(path, ttl):
    """setxattr user.quorumfs.ttl; returns (monotonic before, after, lease id)."""
    t0 = time.monotonic()
    os.setxattr(path, TTL_X, str(ttl).encode())
    t1 = time.monotonic()
    return t0, t1, lease_of(path)


def lease_of(path):
    return os.getxattr(path, LEASE_X).rstrip(b"\0").decode().strip()


def ttl_of(path):
    return int(os.getxattr(path, TTL_X).rstrip(b"\0").strip())


def leases(m):
    return set(os.listdir(m.p(".quorumfs/leases")))


def lease_json(m, lid):
    return json.loads(read_file(m.p(f".quorumfs/leases/{lid}")))


def gone_everywhere(c, names, rels):
    return all(not os.path.lexists(c.m(n).p(r)) for n in names for r in rels)


def deletion_revision(m, rel, hi):
    """The revision at which rel was deleted, from the /.quorumfs/rev view:
    the first revision after the last one (<= hi) that still has it."""
    assert not os.path.lexists(m.p(f".quorumfs/rev/{hi}/{rel}")), f"{rel} exists at {hi}"
    for r in range(hi - 1, 0, -1):
        if os.path.lexists(m.p(f".quorumfs/rev/{r}/{rel}")):
            return r + 1
    raise AssertionError(f"{m.name}: {rel} never existed in revisions 1..{hi}")


def assert_deleted_at_one_revision(c, names, rels):
    """Every member deleted every one of rels at the same single revision; returns it."""
    hi = c.converge(names)
    revs = {(n, r): deletion_revision(c.m(n), r, hi) for n in names for r in rels}
    assert len(set(revs.values())) == 1, f"deletion revisions differ: {revs}"
    return next(iter(revs.values()))


def test_expiry_deletes_on_every_member_at_one_revision_seen_by_inotify(cluster):
    """Two files on one lease (granted through n1, the second attached
    through n2), one attached and detached again (through n3), one without
    a lease: the two leased files go at one revision on every member, each
    reported by one DELETE on every mount; the others stay."""
    c = cluster.start()
    n1, n2, n3 = (c.m(n) for n in NAMES)
    n1.sh("mkdir svc && echo a > svc/a && echo b > svc/b && echo k > svc/keep && "
          "echo d > svc/detached")
    c.converge()
    ttl = 2
    with Watchers(c, NAMES, events=DELETE_EVENTS) as ws:
        t0, t1, lid = grant(n1.p("svc/a"), ttl)
        os.setxattr(n2.p("svc/b"), LEASE_X, lid.encode())
        os.setxattr(n3.p("svc/detached"), LEASE_X, lid.encode())
        assert lease_of(n3.p("svc/detached")) == lid
        os.removexattr(n3.p("svc/detached"), LEASE_X)
        c.converge()  # xattrs are read from the local replica (only open() waits for a read point)
        for n in NAMES:
            m = c.m(n)
            assert wait_until(lambda m=m: lid in leases(m), 3), (n, leases(m))
            j = lease_json(m, lid)
            assert j["id"] == lid and j["ttl"] == ttl and 0 < j["remaining"] <= ttl, (n, j)
            assert sorted(j["keys"]) == ["/svc/a", "/svc/b"], (n, j)
            assert lease_of(m.p("svc/b")) == lid
            assert errno_of(os.getxattr, m.p("svc/detached"), LEASE_X) == errno.ENODATA
        assert wait_until(lambda: gone_everywhere(c, NAMES, ["svc/a", "svc/b"]),
                          ttl + ELECTION + 3, interval=0.02), "leased keys still there"
        t_gone = time.monotonic()
        assert t_gone - t0 >= ttl - 0.5, f"expired {t_gone - t0:.2f} s after a {ttl} s grant"
        assert t_gone - t1 <= ttl + ELECTION + 1, f"expired {t_gone - t1:.2f} s after grant"
        want = sorted([("DELETE", "svc/a"), ("DELETE", "svc/b")])
        for n in NAMES:
            ws[n].wait_for(lambda w: len(w.since()) >= 2)
        time.sleep(1.0)  # late duplicates
        for n in NAMES:
            assert sorted(ws[n].since()) == want, f"inotify on {n}: {ws[n].since()}"
    rev = assert_deleted_at_one_revision(c, NAMES, ["svc/a", "svc/b"])
    for n in NAMES:
        m = c.m(n)
        assert read_file(m.p("svc/keep")) == b"k\n" and read_file(m.p("svc/detached")) == b"d\n"
        assert lid not in leases(m), (n, leases(m))
        assert errno_of(read_file, m.p(f".quorumfs/leases/{lid}")) == errno.ENOENT
        assert os.path.lexists(m.p(f".quorumfs/rev/{rev - 1}/svc/a"))
    print(f"lease {lid} ({ttl} s): keys gone {t_gone - t1:.3f} s after the grant returned, "
          f"at revision {rev} on every member")


def test_renewal_by_touch_write_same_ttl_and_lease_entry(cluster):
    """Five files on five leases of 1.5 s; for 5 s (over three TTLs) four are
    renewed, each its own way and through different members; the fifth
    expires. Once the renewals stop the four expire too."""
    c = cluster.start()
    n1, n2, n3 = (c.m(n) for n in NAMES)
    n1.sh("mkdir r && for f in touch write ttl entry idle; do echo $f > r/$f; done")
    ttl = 1.5
    ids = {}
    for f in ("touch", "write", "ttl", "entry", "idle"):
        ids[f] = grant(n1.p(f"r/{f}"), ttl)[2]
    assert len(set(ids.values())) == 5, ids
    def by_write(i):
        assert write_file(n2.p("r/write"), f"w{i}\n") is None

    renew = {
        "touch": lambda i: n3.sh("touch r/touch"),
        "write": by_write,
        "ttl": lambda i: os.setxattr(n3.p("r/ttl"), TTL_X, str(ttl).encode()),
        "entry": lambda i: os.utime(n2.p(f".quorumfs/leases/{ids['entry']}")),
    }
    t_start = time.monotonic()
    i = 0
    while time.monotonic() - t_start < 5.0:
        for f, fn in renew.items():
            fn(i)
        i += 1
        time.sleep(0.3)
    for n in NAMES:
        m = c.m(n)
        assert not os.path.lexists(m.p("r/idle")), f"{n}: the unrenewed key outlived 5 s"
        for f in renew:
            assert os.path.exists(m.p(f"r/{f}")), f"{n}: r/{f} expired although renewed"
            assert lease_of(m.p(f"r/{f}")) == ids[f], f"{n}: r/{f} is on another lease now"
        assert ids["idle"] not in leases(m)
    assert read_file(n1.p("r/write")) == f"w{i - 1}\n".encode()
    t_stop = time.monotonic()
    assert wait_until(lambda: gone_everywhere(c, NAMES, [f"r/{f}" for f in renew]),
                      ttl + ELECTION + 3, interval=0.02), \
        {n: sorted(os.listdir(c.m(n).p("r"))) for n in NAMES}
    took = time.monotonic() - t_stop
    assert took <= ttl + ELECTION + 1 + 0.5, f"renewed keys lived {took:.2f} s after the last renewal"
    for n in NAMES:
        assert leases(c.m(n)) == set(), (n, leases(c.m(n)))


def test_revoke_by_rm_of_the_lease_entry(cluster):
    c = cluster.start()
    n1, n2, n3 = (c.m(n) for n in NAMES)
    n1.sh("mkdir locks && echo owner1 > locks/a && echo owner1 > locks/b")
    lid = grant(n1.p("locks/a"), 60)[2]
    os.setxattr(n1.p("locks/b"), LEASE_X, lid.encode())
    c.converge()
    with Watchers(c, ["n1", "n3"], events=DELETE_EVENTS) as ws:
        t = time.monotonic()
        os.unlink(n2.p(f".quorumfs/leases/{lid}"))
        assert wait_until(lambda: gone_everywhere(c, NAMES, ["locks/a", "locks/b"]), 3), \
            "revoked lease's keys still there"
        print(f"revoke: keys gone everywhere {time.monotonic() - t:.3f} s after rm")
        for n in ("n1", "n3"):
            ws[n].wait_for(lambda w: len(w.since()) >= 2)
        time.sleep(0.5)
        for n in ("n1", "n3"):
            assert sorted(ws[n].since()) == [("DELETE", "locks/a"), ("DELETE", "locks/b")], \
                (n, ws[n].since())
    assert_deleted_at_one_revision(c, NAMES, ["locks/a", "locks/b"])
    for n in NAMES:
        assert lid not in leases(c.m(n))
        assert os.listdir(c.m(n).p("locks")) == []
    assert errno_of(os.unlink, n1.p(f".quorumfs/leases/{lid}")) == errno.ENOENT
    # The name is free again: the lock can be taken anew.
    assert write_file(n3.p("locks/a"), "owner2\n", os.O_WRONLY | os.O_CREAT | os.O_EXCL) is None


def test_ttl_values_minimum_and_errors(cluster):
    """The minimum is 1.5 x --election-ms (500 ms here: 0.75 s). Below it, or
    not a positive number: EINVAL and nothing changed."""
    c = cluster.start()
    n1, n3 = c.m("n1"), c.m("n3")
    n1.sh("echo v > f && echo w > g")
    rev = c.converge()
    assert ELECTION_MS == 500
    for bad in ("0.5", "0.74", "0", "-3", "abc", "", "1e9999", "nan"):
        e = errno_of(os.setxattr, n1.p("f"), TTL_X, bad.encode())
        assert e == errno.EINVAL, f"ttl {bad!r}: {errname(e)}"
    assert errno_of(os.getxattr, n1.p("f"), LEASE_X) == errno.ENODATA
    assert errno_of(os.getxattr, n1.p("f"), TTL_X) == errno.ENODATA
    assert c.converge() == rev, "a refused ttl changed the store"
    assert leases(n1) == set()
    # Attaching to a lease that does not exist fails and attaches nothing.
    e = errno_of(os.setxattr, n1.p("f"), LEASE_X, b"123abc")
    assert e is not None, "attached to a lease that does not exist"
    assert errno_of(os.getxattr, n1.p("f"), LEASE_X) == errno.ENODATA
    assert errno_of(os.setxattr, n1.p("f"), LEASE_X, b"not-hex") == errno.EINVAL
    # The minimum itself is accepted, through a follower too.
    t0, t1, lid = grant(n3.p("f"), "0.75")
    try:
        j = lease_json(n1, lid)
        assert j["ttl"] == 0.75 and j["keys"] == ["/f"], j
    except FileNotFoundError:  # a slow machine: already expired
        assert time.monotonic() - t0 >= 0.75 - 0.5, "the 0.75 s lease vanished at once"
    assert wait_until(lambda: gone_everywhere(c, NAMES, ["f"]), 4), "0.75 s lease did not expire"
    assert read_file(n1.p("g")) == b"w\n"


def test_ttl_counts_down_and_lease_json(cluster):
    c = cluster.start()
    n1, n3 = c.m("n1"), c.m("n3")
    n1.sh("echo v > f")
    ttl = 4
    t0, t1, lid = grant(n1.p("f"), ttl)
    c.converge()  # n3 serves xattrs from what it has applied
    seen = []
    while time.monotonic() - t0 < 2.6:
        before = time.monotonic()
        left = {n: ttl_of(c.m(n).p("f")) for n in ("n1", "n3")}
        j = lease_json(n3, lid)
        after = time.monotonic()
        seen.append((round(after - t0, 2), left, j["remaining"]))
        # Seconds left, rounded up, somewhere between the two readings (0.1 s
        # of slack for the clocks).
        lo = math.ceil(ttl - (after - t0) - 0.1)
        hi = math.ceil(ttl - (before - t1) + 0.1)
        for v in (*left.values(), j["remaining"]):
            assert lo <= v <= min(hi, ttl), (lo, hi, seen)
        assert j["id"] == lid and j["ttl"] == ttl and j["keys"] == ["/f"], j
        time.sleep(0.1)
    vals = [v["n1"] for _, v, _ in seen]
    assert vals == sorted(vals, reverse=True), f"ttl went up without a renewal: {seen}"
    assert vals[0] >= ttl - 1 and vals[-1] <= 2, seen
    os.utime(n1.p("f"))
    c.converge()
    assert ttl_of(n3.p("f")) == ttl, "touch did not renew"
    assert lease_json(n1, lid)["remaining"] == ttl


@pytest.mark.parametrize("granter, kill_at", [("follower", 1.0), ("follower", 3.0),
                                              ("leader", 1.0)],
                         ids=["early-kill", "late-kill", "granting-leader-killed"])
def test_leader_kill9_neither_expires_early_nor_keeps_the_lease(cluster, granter, kill_at):
    """A 4 s lease; kill_at s after the grant the leader gets SIGKILL. The
    survivors (serializable mounts: what they have applied, without waiting
    for a leader) must still have the key at TTL - 0.5 s after the grant
    call started, and must have deleted it by TTL + election timeout + 1 s
    after it returned; the seconds left are carried over, not reset."""
    ttl = 4
    c = cluster.start(opts={n: "consistency=serializable" for n in NAMES})
    leader = c.wait_leader()
    g = leader if granter == "leader" else c.followers()[0]
    c.m(g).sh("mkdir -p svc && echo host > svc/web")
    c.converge()
    survivors = [n for n in NAMES if n != leader]
    t0, t1, lid = grant(c.m(g).p("svc/web"), ttl)
    killed = False
    gone = {}
    ttl_after = None
    while len(gone) < len(survivors):
        now = time.monotonic()
        if not killed and now - t0 >= kill_at:
            c.kill9(leader)
            killed = True
        for n in survivors:
            if n not in gone and not os.path.lexists(c.m(n).p("svc/web")):
                gone[n] = now
        if killed and ttl_after is None and kill_at + 1.5 <= now - t0 < ttl - 1 \
                and c.leader(survivors):
            ttl_after = (time.monotonic() - t1, ttl_of(c.m(survivors[0]).p("svc/web")))
        assert now - t1 <= ttl + ELECTION + 1 + 2, f"still there after {now - t1:.2f} s: {gone}"
        time.sleep(0.01)
    new = c.wait_leader(survivors)
    report = {n: (round(t - t0, 3), round(t - t1, 3)) for n, t in gone.items()}
    print(f"{granter} granted {ttl} s lease, leader {leader} killed at {kill_at} s, "
          f"new leader {new}: gone at (s after grant start, after grant return) {report}; "
          f"ttl read after the election {ttl_after}")
    for n, t in gone.items():
        assert t - t0 >= ttl - 0.5, f"{n}: expired early, {t - t0:.2f} s after the grant"
        assert t - t1 <= ttl + ELECTION + 1, f"{n}: kept {t - t1:.2f} s after the grant"
    if ttl_after is not None:
        # At most what is left of the TTL (plus the election timeout a new
        # leader may add), not a fresh TTL.
        elapsed, left = ttl_after
        assert left <= math.ceil(ttl - elapsed + ELECTION), \
            f"{left} s left {elapsed:.2f} s into a {ttl} s lease: remaining time was reset"
    else:
        assert kill_at >= ttl - 2.5, "no leader among the survivors to check the ttl with"
    assert_deleted_at_one_revision(c, survivors, ["svc/web"])
    for n in survivors:
        assert lid not in leases(c.m(n))
        assert os.listdir(c.m(n).p("svc")) == []


def _tree_setup(c):
    c.m("n1").sh("mkdir -p tree/sub && echo x > tree/sub/f && echo y > tree/g && echo m > moved")
    c.converge()


TREE_EVENTS = [("DELETE", "tree/sub/f"), ("DELETE_SELF", "tree/sub"), ("DELETE,ISDIR", "tree/sub"),
               ("DELETE", "tree/g"), ("DELETE_SELF", "tree"), ("DELETE,ISDIR", "tree")]


def test_lease_follows_rename_and_a_leased_directory_goes_whole(cluster):
    """A leased file renamed keeps its lease under the new name and expires
    there; a leased directory expires with everything in it, on every
    member, and inotify on n3 reports the directory's own deletion once.
    (The TTLs differ so the two expiries are two revisions.)"""
    c = cluster.start()
    n1, n2, n3 = (c.m(n) for n in NAMES)
    _tree_setup(c)
    with Watchers(c, ["n3"], events=("delete", "delete_self", "moved_from", "moved_to")) as ws:
        lf = grant(n1.p("moved"), 2)[2]
        ld = grant(n2.p("tree"), 3)[2]
        os.rename(n1.p("moved"), n1.p("renamed"))
        c.converge()
        assert lease_of(n3.p("renamed")) == lf
        assert lease_json(n3, lf)["keys"] == ["/renamed"]
        assert lease_json(n3, ld)["keys"] == ["/tree"]
        assert wait_until(lambda: gone_everywhere(c, NAMES, ["renamed"]), 2 + 3)
        assert os.path.exists(n3.p("tree/sub/f")), "the directory's 3 s lease expired with the 2 s one"
        assert wait_until(lambda: gone_everywhere(c, NAMES, ["tree"]), 3 + 3), \
            {n: os.listdir(c.m(n).p("")) for n in NAMES}
        w = ws["n3"]
        # DELETE_SELF comes when the kernel drops the directory's last
        # dentry reference: after DELETE,ISDIR if another process was
        # walking through "tree" at that moment (as gone_everywhere does),
        # exactly as for a local rmdir.
        w.wait_for(lambda w: {("DELETE,ISDIR", "tree"), ("DELETE_SELF", "tree")} <= set(w.since()),
                   timeout=5)
        time.sleep(0.5)
        got = w.since()
        own = [e for e in got if e[1] in ("moved", "renamed", "tree")]
        assert own[:3] == [("MOVED_FROM", "moved"), ("MOVED_TO", "renamed"),
                           ("DELETE", "renamed")], f"inotify on n3: {got}"
        assert sorted(own[3:]) == [("DELETE,ISDIR", "tree"), ("DELETE_SELF", "tree")], \
            f"inotify on n3: {got}"
        assert all(got.count(e) == 1 for e in got), f"inotify on n3: {got}"
    for n in NAMES:
        assert [e for e in os.listdir(c.m(n).p("")) if e != ".quorumfs"] == [], n
        assert leases(c.m(n)) == set()
    c.assert_same()


def test_leased_directory_expiry_reports_every_entry(cluster):
    """When a leased directory expires, watchers on other members hear of
    every entry in it, children before their directory, as `rm -r` gives."""
    c = cluster.start()
    _tree_setup(c)
    with Watchers(c, ["n3"], events=("delete", "delete_self")) as ws:
        grant(c.m("n1").p("tree"), 1.5)
        assert wait_until(lambda: gone_everywhere(c, NAMES, ["tree"]), 1.5 + 3)
        w = ws["n3"]
        w.wait_for(lambda w: len(w.since()) >= len(TREE_EVENTS))
        time.sleep(0.5)
        got = w.since()
        assert sorted(got) == sorted(TREE_EVENTS), f"inotify on n3: {got}"
        assert got.index(("DELETE", "tree/sub/f")) < got.index(("DELETE,ISDIR", "tree/sub")) \
            < got.index(("DELETE,ISDIR", "tree")), got


def test_leases_expiring_in_one_revision_reported_once(cluster):
    """Four keys on four leases of the same TTL, granted within milliseconds:
    the keeper expires (some of) them in one revision; every member still
    reports each key's DELETE once."""
    c = cluster.start()
    n1 = c.m("n1")
    n1.sh("mkdir svc && for h in h1 h2 h3 h4; do echo $h > svc/$h; done")
    c.converge()
    hosts = ["h1", "h2", "h3", "h4"]
    with Watchers(c, NAMES, events=("delete",)) as ws:
        ids = {grant(n1.p(f"svc/{h}"), 1.5)[2] for h in hosts}
        assert len(ids) == 4
        assert wait_until(lambda: gone_everywhere(c, NAMES, [f"svc/{h}" for h in hosts]), 1.5 + 3)
        for n in NAMES:
            ws[n].wait_for(lambda w: len(w.since()) >= 4)
        time.sleep(1.0)
        for n in NAMES:
            assert sorted(ws[n].since()) == [("DELETE", f"svc/{h}") for h in hosts], \
                f"inotify on {n}: {ws[n].since()}"
    hi = c.converge()
    revs = {h: deletion_revision(n1, f"svc/{h}", hi) for h in hosts}
    assert len(set(revs.values())) < len(hosts), f"no two leases expired together: {revs}"


def test_learner_grants_sees_expiry_and_a_member_down_catches_up(cluster):
    """A lease granted through a learner's mount expires while n3 is stopped:
    the learner's inotify reports the DELETE; n3, restarted, no longer has
    the key and agrees on the revision it went at."""
    c = cluster.start()
    c.m("n1").sh("mkdir svc")
    j = c.join("n4", 4, via="n1")
    assert wait_until(lambda: c.role("n4") == "learner", 10), c.status("n4")
    c.converge()
    j.sh("echo host4 > svc/n4")
    c.converge()
    c.stop("n3")
    w = Watcher(j.mnt, ("delete",))
    try:
        t0, t1, lid = grant(j.p("svc/n4"), 1.5)
        assert lease_json(j, lid)["keys"] == ["/svc/n4"]
        assert wait_until(lambda: gone_everywhere(c, ["n1", "n2", "n4"], ["svc/n4"]), 1.5 + 3), \
            "the learner's lease did not expire"
        t = time.monotonic()
        assert 1.5 - 0.5 <= t - t0 and t - t1 <= 1.5 + ELECTION + 1, t - t1
        w.wait_for(lambda w: w.since())
        time.sleep(0.5)
        assert w.since() == [("DELETE", "svc/n4")], w.since()
    finally:
        w.close()
    c.restart("n3")
    assert_deleted_at_one_revision(c, ["n1", "n2", "n3", "n4"], ["svc/n4"])
    assert os.listdir(c.m("n3").p("svc")) == [] and leases(c.m("n3")) == set()


def test_single_member_leases(members):
    """The embedded default (one member, --election-ms 1000: minimum 1.5 s):
    grant, expiry seen by inotify on its own mount once, touch keeps a key
    alive, rm of the lease entry revokes."""
    m = members.start("n1")
    m.sh("mkdir s && echo a > s/exp && echo b > s/kept && echo c > s/revoked")
    assert errno_of(os.setxattr, m.p("s/exp"), TTL_X, b"1.4") == errno.EINVAL
    w = Watcher(m.mnt, ("delete", "delete_self"))  # touch's own CLOSE_WRITEs aside
    try:
        t0, t1, lexp = grant(m.p("s/exp"), 1.5)
        lkept = grant(m.p("s/kept"), 1.5)[2]
        lrev = grant(m.p("s/revoked"), 60)[2]
        assert leases(m) == {lexp, lkept, lrev}
        assert lease_json(m, lrev)["keys"] == ["/s/revoked"]
        os.unlink(m.p(f".quorumfs/leases/{lrev}"))
        assert not os.path.lexists(m.p("s/revoked"))
        end = time.monotonic() + 4
        t_gone = None
        while time.monotonic() < end:
            m.sh("touch s/kept")
            if t_gone is None and not os.path.lexists(m.p("s/exp")):
                t_gone = time.monotonic()
            time.sleep(0.1)
        assert not os.path.lexists(m.p("s/exp")) and t_gone is not None
        assert 1.5 - 0.5 <= t_gone - t0 and t_gone - t1 <= 1.5 + 1.0 + 1 + 0.2, t_gone - t0
        assert read_file(m.p("s/kept")) == b"b\n" and lease_of(m.p("s/kept")) == lkept
        w.wait_for(lambda w: len(w.since()) >= 2)
        time.sleep(0.5)
        assert sorted(w.since()) == [("DELETE", "s/exp"), ("DELETE", "s/revoked")], w.since()
        assert wait_until(lambda: not os.path.lexists(m.p("s/kept")), 4)
        assert leases(m) == set()
    finally:
        w.close()
