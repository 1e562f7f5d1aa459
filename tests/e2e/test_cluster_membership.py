"""Membership: a learner joins with --join, mounts and sees everything,
writes through it, is promoted; members are removed (a follower, the leader);
leadership is transferred (SPEC §2.1, §2.2, §4; issue 3 deliverable 6)."""
import os
import time

from cluster import ETIMEDOUT, cluster, tree  # noqa: F401  (cluster is a fixture)
from qfs import errname, is_mounted, read_file, wait_until, write_file

NAMES = ["n1", "n2", "n3"]


def _members_file(c, n):
    """{name: role field} from /.quorumfs/members of member n."""
    rows = read_file(c.m(n).p(".quorumfs/members")).decode().splitlines()
    return {r.split()[0]: r.split()[2] for r in rows if r.strip()}


def _wait_removed(c, n):
    """A removed member notices, unmounts and exits 0 within a few seconds."""
    m = c.m(n)
    assert wait_until(lambda: not c.running(n), 5), f"{n} still running after its removal"
    assert m.proc.returncode == 0, m.log_text(run=True)
    assert not is_mounted(m.mnt)


def _populate(c):
    c.m("n1").sh("mkdir -p etc/app/conf.d var && echo host1 > etc/app/hosts && "
                 "for i in $(seq 30); do echo value$i > etc/app/conf.d/k$i; done && "
                 "ln -s app/hosts etc/hosts-link && setfattr -n user.owner -v ops etc/app/hosts")
    c.m("n2").sh("head -c 300000 /dev/urandom > var/blob && mv etc/app/conf.d/k1 var/k1")


def test_learner_joins_sees_everything_writes_and_is_promoted(cluster):
    c = cluster.start()
    _populate(c)
    rev = c.converge()
    via = c.followers()[0]
    j = c.join("n4", 4, via=via)
    # the mount may be up before the learner has applied its own admission
    assert wait_until(lambda: c.role("n4") == "learner" and c.status("n4")["leader"]
                      == c.leader(), 5), c.status("n4")
    assert c.member_list() == {"n1": "voter", "n2": "voter", "n3": "voter", "n4": "learner"}
    assert _members_file(c, "n4")["n4"] == "learner"
    assert _members_file(c, "n1")["n4"] == "learner"
    # it sees everything at once, xattrs included
    assert tree(j.mnt) == tree(c.m("n1").mnt)
    assert os.getxattr(j.p("etc/app/hosts"), "user.owner") == b"ops"
    assert c.status("n4")["revision"] >= rev
    # writes through the learner are forwarded to the leader
    assert write_file(j.p("etc/app/from-learner"), b"L1") is None
    for n in NAMES:
        assert read_file(c.m(n).p("etc/app/from-learner")) == b"L1", n
    j.sh("mkdir etc/new && mv etc/app/conf.d etc/new/ && rm var/k1")
    for n in NAMES:
        assert read_file(c.m(n).p("etc/new/conf.d/k2")) == b"value2\n", n
    # a learner cannot take the lead
    ld = c.leader()
    r = c.cli("leader", "transfer", "n4", check=False)
    assert r.returncode != 0 and r.stderr.strip(), r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert c.leader() == ld
    # promote
    c.cli("member", "promote", "n4")
    assert c.member_list()["n4"] == "voter"
    assert wait_until(lambda: c.role("n4") in ("follower", "leader"), 5), c.status("n4")
    assert _members_file(c, "n4")["n4"].startswith("voter")
    assert write_file(j.p("after-promote"), b"P") is None
    # four voters: one down still leaves a quorum of three
    down = [n for n in NAMES if n != c.leader()][0]
    c.kill9(down)
    assert write_file(j.p("one-down"), b"D") is None
    c.restart(down)
    t = c.assert_same()
    assert t["after-promote"] == ("f", b"P") and t["one-down"] == ("f", b"D")
    assert "var/k1" not in t and "etc/app/conf.d" not in t


def test_remove_followers_down_to_one_voter(cluster):
    """Removing two followers leaves a one-voter cluster whose leader commits
    alone: the configuration really shrank."""
    c = cluster.start()
    _populate(c)
    ld = c.leader()
    f1, f2 = c.followers()
    c.cli("member", "remove", f1, endpoints=[f2])
    assert set(c.member_list(via=ld)) == {ld, f2}
    assert set(_members_file(c, f2)) == {ld, f2}
    _wait_removed(c, f1)
    assert write_file(c.m(f2).p("two"), b"2") is None
    c.cli("member", "remove", f2, endpoints=[ld])
    assert c.member_list(via=ld) == {ld: "voter"}
    _wait_removed(c, f2)
    # alone, and still a quorum
    assert write_file(c.m(ld).p("one"), b"1") is None
    assert c.role(ld) == "leader"
    r = c.cli("status", endpoints=[ld]).stdout.strip().splitlines()
    assert len(r) == 1 and "role=leader" in r[0], r
    assert read_file(c.m(ld).p("two")) == b"2"


def test_remove_the_leader(cluster):
    c = cluster.start()
    _populate(c)
    old = c.leader()
    rest = [n for n in NAMES if n != old]
    term = c.status(rest[0])["term"]
    c.cli("member", "remove", old, endpoints=[rest[0]])
    new = c.wait_leader(among=rest, not_=old)
    assert new in rest and c.status(new)["term"] >= term
    assert set(c.member_list(via=rest[1])) == set(rest)
    for n in rest:
        assert set(_members_file(c, n)) == set(rest), n
    _wait_removed(c, old)
    assert write_file(c.m(rest[1]).p("after"), b"x") is None
    c.assert_same()
    # two voters now: one of them down means no quorum
    c.kill9(new)
    err = write_file(c.m([n for n in rest if n != new][0]).p("lost"), b"x")
    assert err == ETIMEDOUT, errname(err)


def test_removed_member_stops_by_itself(cluster):
    c = cluster.start()
    f = c.followers()[0]
    c.m(f).sh("echo before > k")
    c.cli("member", "remove", f)
    _wait_removed(c, f)
    assert "removed from the cluster" in c.m(f).log_text(run=True)
    assert write_file(c.m(c.leader()).p("k"), b"after") is None


def test_leader_transfer(cluster):
    c = cluster.start()
    c.m("n1").sh("echo 0 > counter")
    for rnd, target in enumerate(["n2", "n3", "n1", "n3"]):
        if c.leader() == target:
            continue
        t0 = time.monotonic()
        c.cli("leader", "transfer", target, endpoints=[n for n in NAMES if n != target][:1])
        ld = c.wait_leader(timeout=5)
        took = time.monotonic() - t0
        print(f"leader transfer to {target}: {took * 1000:.0f} ms")
        assert ld == target, {n: c.status(n) for n in NAMES}
        assert all(c.status(n)["leader"] == target for n in NAMES)
        assert write_file(c.m(NAMES[rnd % 3]).p("counter"), f"{rnd + 1}") is None
    t = c.assert_same()
    assert t["counter"] == ("f", b"4")
    js = c.cli_json("status")
    assert [s["name"] for s in js if s["role"] == "leader"] == ["n3"]
