"""`quorumfs lease grant/keepalive/revoke/list` and `quorumfs put --ttl/--lease`
(SPEC §2.2, §3.5; issue 4 deliverable 3): leases without a mount, seen by
the mount the same way as the ones it grants.

Most tests run one member with --listen-client and --election-ms 500, so
the minimum ttl is 0.75 s and expiry tests stay short. The lease a CLI
command reports is checked against the mount (getfattr user.quorumfs.lease,
/.quorumfs/leases/ID) and keys are checked to disappear when, and only
when, their lease ends. The last test runs on a 3-member cluster: grants
through a follower, and a keepalive that outlives the leader it was
renewing through.

Times are measured with time.monotonic() around the commands: a lower
bound from before the call that granted or last renewed, an upper bound
from after it returned.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from cluster import ELECTION_MS, cluster, start_with_client_port  # noqa: F401  (cluster is a fixture)
from qfs import QUORUMFS, read_file, wait_until

ELECTION = 0.5  # --election-ms of the single member below: minimum ttl 0.75 s
# How late an expiry may be seen: the leader's keeper checks about every
# heartbeat, then a commit and our polling.
LATE = 1.5
ID = re.compile(r"^[0-9a-f]+$")


def start(members):
    return start_with_client_port(members, "--election-ms", str(int(ELECTION * 1000)),
                                  "--heartbeat-ms", "50")


@pytest.fixture
def m(members):
    return start(members)


def cli(m, *args, endpoints=None, timeout=30):
    return subprocess.run([str(QUORUMFS), *map(str, args), "--endpoints", endpoints or m.ep],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout)


def ok(m, *args, **kw):
    r = cli(m, *args, **kw)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert r.stderr == "", r.stderr
    return r.stdout


def fails(m, *args, code=1, **kw):
    """The command exits `code` with exactly one line on stderr; returns it."""
    r = cli(m, *args, **kw)
    assert r.returncode == code, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def grant(m, ttl, **kw):
    """lease grant TTL -> the id; checks the line it prints."""
    out = ok(m, "lease", "grant", ttl, **kw)
    g = re.fullmatch(r"lease ([0-9a-f]+) granted, ttl (\S+)\n", out)
    assert g, out
    assert float(g.group(2)) == float(ttl), out
    return g.group(1)


def put(m, key, value, *args, **kw):
    """put KEY VALUE ARGS -> (revision, lease id or None)."""
    out = ok(m, "put", key, value, *args, **kw)
    g = re.fullmatch(r"OK revision=(\d+)(?: lease=([0-9a-f]+))?\n", out)
    assert g, out
    return int(g.group(1)), g.group(2)


def getfattr_lease(path):
    r = subprocess.run(["getfattr", "-n", "user.quorumfs.lease", "--only-values", str(path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().rstrip("\0")


def lease_list(m, **kw):
    """lease list (simple) -> {id: (ttl, remaining, nkeys)}."""
    out = {}
    for line in ok(m, "lease", "list", **kw).splitlines():
        g = re.fullmatch(r"([0-9a-f]+) ttl=(\S+) remaining=(\d+) keys=(\d+)", line)
        assert g, line
        out[g.group(1)] = (float(g.group(2)), int(g.group(3)), int(g.group(4)))
    return out


def lease_list_json(m, **kw):
    doc = json.loads(ok(m, "lease", "list", "-w", "json", **kw))
    return doc, {le["id"]: le for le in doc["leases"]}


def ctl_leases(m):
    return set(os.listdir(m.p(".quorumfs/leases")))


def deletion_revision(m, rel, hi):
    """The revision that deleted rel, from the /.quorumfs/rev view."""
    assert not os.path.lexists(m.p(f".quorumfs/rev/{hi}/{rel}"))
    for r in range(hi - 1, 0, -1):
        if os.path.lexists(m.p(f".quorumfs/rev/{r}/{rel}")):
            return r + 1
    raise AssertionError(f"{rel} never existed in revisions 1..{hi}")


class Keepalive:
    """`quorumfs lease keepalive ID` in the background."""

    def __init__(self, m, lid, endpoints=None):
        self.proc = subprocess.Popen(
            [str(QUORUMFS), "lease", "keepalive", lid, "--endpoints", endpoints or m.ep],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self, sig=signal.SIGINT):
        """Interrupts it; returns (exit status, stdout lines, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, out.splitlines(), err


@pytest.fixture
def keepalives():
    ks = []

    def make(*args, **kw):
        k = Keepalive(*args, **kw)
        ks.append(k)
        return k

    yield make
    for k in ks:
        if k.proc.poll() is None:
            k.proc.kill()
        k.proc.communicate(timeout=10)


# ---- commands and usage ------------------------------------------------------------


def test_help_and_usage_errors(m):
    for sub in ("grant", "keepalive", "revoke", "list"):
        r = cli(m, "lease", sub, "--help")
        assert r.returncode == 0 and f"quorumfs lease {sub}" in r.stdout, r.stdout + r.stderr
    assert "--once" in cli(m, "lease", "keepalive", "--help").stdout
    r = cli(m, "put", "--help")
    assert r.returncode == 0 and "--ttl" in r.stdout and "--lease" in r.stdout
    r = cli(m, "lease", "--help")
    assert r.returncode == 0 and all(s in r.stdout for s in ("grant", "keepalive", "revoke",
                                                             "list"))
    # Usage errors: exit 2 and one line, before anything is sent.
    assert "TTL" in fails(m, "lease", "grant", "abc", code=2)
    assert "TTL" in fails(m, "lease", "grant", "1e999", code=2)
    assert "TTL" in fails(m, "lease", "grant", "0", code=2)
    assert "hex" in fails(m, "lease", "revoke", "xyz", code=2)
    assert "hex" in fails(m, "lease", "keepalive", "0", code=2)
    assert "exclude" in fails(m, "put", "/k", "v", "--ttl", "5", "--lease", "ab", code=2)
    assert "--ttl" in fails(m, "put", "/k", "v", "--ttl", "soon", code=2)
    assert "does not apply" in fails(m, "del", "/k", "--ttl", "5", code=2)
    assert "does not apply" in fails(m, "lease", "revoke", "ab", "--once", code=2)
    assert "missing" in fails(m, "lease", "grant", code=2)
    assert not os.path.lexists(m.p("k"))
    assert ctl_leases(m) == set()


def test_grant_list_revoke(m):
    lid = grant(m, 30)
    assert ID.match(lid) and 0 < int(lid, 16) < 1 << 48
    # The mount sees the lease the CLI granted.
    assert ctl_leases(m) == {lid}
    assert json.loads(read_file(m.p(f".quorumfs/leases/{lid}")))["keys"] == []
    ttl, remaining, nkeys = lease_list(m)[lid]
    assert ttl == 30 and 28 <= remaining <= 30 and nkeys == 0
    # -w json for grant too; decimals are kept.
    doc = json.loads(ok(m, "lease", "grant", "2.5", "-w", "json"))
    assert ID.match(doc["id"]) and doc["ttl"] == 2.5
    assert set(lease_list(m)) == {lid, doc["id"]}
    rev = m.revision()
    out = ok(m, "lease", "revoke", lid)
    assert out == f"lease {lid} revoked revision={rev}\n", out  # no key: no new revision
    assert lid not in lease_list(m) and lid not in ctl_leases(m)
    # Gone is gone: revoke and keepalive say so, exit 1.
    line = fails(m, "lease", "revoke", lid)
    assert f"lease {lid} not found (expired or revoked)" in line, line
    line = fails(m, "lease", "keepalive", lid, "--once")
    assert f"lease {lid} not found (expired or revoked)" in line, line


def test_ttl_below_minimum_names_it(m):
    for args in (["lease", "grant", "0.5"], ["put", "/low", "v", "--ttl", "0.7"]):
        line = fails(m, *args)
        assert "minimum of 0.75 s" in line and "--election-ms 500" in line, line
    assert not os.path.lexists(m.p("low"))
    assert lease_list(m) == {}
    # The minimum itself is fine.
    assert grant(m, 0.75) in lease_list(m)


def test_put_ttl_attaches_and_expires(m):
    m.sh("mkdir -p svc")
    t0 = time.monotonic()
    rev, lid = put(m, "/svc/web/h1", "10.0.0.1:80", "--ttl", 2)
    t1 = time.monotonic()
    assert lid and ID.match(lid)
    # One transaction: grant, put (with the parents), attach.
    assert rev == m.revision() and m.revision("svc/web/h1") == rev
    assert read_file(m.p("svc/web/h1")) == b"10.0.0.1:80"
    assert getfattr_lease(m.p("svc/web/h1")) == lid
    assert ctl_leases(m) == {lid}
    assert json.loads(read_file(m.p(f".quorumfs/leases/{lid}")))["keys"] == ["/svc/web/h1"]
    _, by_id = lease_list_json(m)
    assert by_id[lid]["keys"] == ["/svc/web/h1"] and by_id[lid]["nkeys"] == 1
    assert wait_until(lambda: not os.path.lexists(m.p("svc/web/h1")), 2 + LATE + 1, 0.02)
    t_gone = time.monotonic()
    assert 2 - 0.2 <= t_gone - t0 and t_gone - t1 <= 2 + LATE, t_gone - t0
    assert lease_list(m) == {} and ctl_leases(m) == set()
    assert os.path.isdir(m.p("svc/web"))  # the parents it made stay
    # JSON output of put --ttl.
    doc = json.loads(ok(m, "put", "/svc/j", "v", "--ttl", "60", "-w", "json"))
    assert doc["revision"] == m.revision() and getfattr_lease(m.p("svc/j")) == doc["lease"]


def test_keepalive_keeps_it_past_several_ttls_then_it_expires(m, keepalives):
    ttl = 1.5
    _, lid = put(m, "/ka", "v", "--ttl", ttl)
    k = keepalives(m, lid)
    time.sleep(4 * ttl)
    assert os.path.exists(m.p("ka")) and getfattr_lease(m.p("ka")) == lid
    assert 0 < lease_list(m)[lid][1] <= 2
    t_stop = time.monotonic()
    rc, lines, err = k.stop()
    assert rc == 0, err
    assert err == ""
    # Now and every ttl/3: about 12 renewals in 6 s, one line each.
    assert len(lines) >= 8, lines
    assert set(lines) == {f"lease {lid} renewed, ttl 1.5"}, lines
    # Left alone, it expires within a ttl of the last renewal.
    assert wait_until(lambda: not os.path.exists(m.p("ka")), ttl + LATE + 1, 0.02)
    assert time.monotonic() - t_stop <= ttl + LATE
    line = fails(m, "lease", "keepalive", lid)
    assert f"lease {lid} not found (expired or revoked)" in line, line


def test_keepalive_once(m):
    lid = grant(m, 30)
    time.sleep(1.2)
    assert lease_list(m)[lid][1] <= 29
    out = ok(m, "lease", "keepalive", lid, "--once")
    assert out == f"lease {lid} renewed, ttl 30\n"
    assert lease_list(m)[lid][1] == 30
    doc = json.loads(ok(m, "lease", "keepalive", lid, "--once", "-w", "json"))
    assert doc == {"id": lid, "ttl": 30}


def test_lease_attaches_a_second_key_and_both_expire_together(m):
    lid = grant(m, 2)
    t0 = time.monotonic()
    put(m, "/pair/a", "1", "--lease", lid)
    rev_b, same = put(m, "/pair/b", "2", "--lease", lid)
    assert same == lid
    assert getfattr_lease(m.p("pair/a")) == lid == getfattr_lease(m.p("pair/b"))
    _, by_id = lease_list_json(m)
    assert by_id[lid]["keys"] == ["/pair/a", "/pair/b"] and by_id[lid]["nkeys"] == 2
    assert lease_list(m)[lid][2] == 2
    # Attaching does not renew: both go with the grant's ttl.
    assert wait_until(lambda: not os.path.exists(m.p("pair/a")), 2 + LATE + 1, 0.02)
    assert time.monotonic() - t0 >= 2 - 0.2
    hi = m.revision()
    assert not os.path.exists(m.p("pair/b"))
    assert deletion_revision(m, "pair/a", hi) == deletion_revision(m, "pair/b", hi) > rev_b
    # A lease that does not exist: nothing is written.
    line = fails(m, "put", "/pair/c", "3", "--lease", lid)
    assert f"lease {lid} not found (expired or revoked)" in line, line
    assert not os.path.lexists(m.p("pair/c"))


def test_revoke_deletes_its_keys_at_once(m):
    _, lid = put(m, "/r/one", "1", "--ttl", 60)
    put(m, "/r/two", "2", "--lease", lid)
    put(m, "/r/other", "3", "--ttl", 60)
    out = ok(m, "lease", "revoke", lid, "-w", "json")
    doc = json.loads(out)
    assert doc["id"] == lid and doc["revision"] == m.revision()
    assert sorted(os.listdir(m.p("r"))) == ["other"]
    assert deletion_revision(m, "r/one", doc["revision"]) == doc["revision"]
    assert deletion_revision(m, "r/two", doc["revision"]) == doc["revision"]
    assert lid not in lease_list(m)


def test_lease_list_json_is_valid_with_the_keys(m):
    doc, by_id = lease_list_json(m)
    assert doc["leases"] == [] and doc["revision"] == m.revision()
    _, l1 = put(m, "/j/a", "1", "--ttl", 60)
    put(m, "/j/b \"quoted\"", "2", "--lease", l1)
    m.sh("mkdir -p j/d && echo x > j/d/f")
    m.sh("setfattr -n user.quorumfs.lease -v " + l1 + " j/d")  # a directory, via the mount
    l2 = grant(m, 45)
    doc, by_id = lease_list_json(m)
    assert doc["revision"] == m.revision()
    assert set(by_id) == {l1, l2}
    assert [le["id"] for le in doc["leases"]] == sorted(by_id, key=lambda i: int(i, 16))
    assert by_id[l1]["keys"] == ["/j/a", "/j/b \"quoted\"", "/j/d"]
    assert by_id[l1]["nkeys"] == 3 and by_id[l1]["ttl"] == 60
    assert by_id[l2]["keys"] == [] and by_id[l2]["ttl"] == 45
    for le in doc["leases"]:
        assert 0 < le["remaining_ms"] <= le["ttl"] * 1000
        assert le["remaining"] == -(-le["remaining_ms"] // 1000)
        assert "keys_truncated" not in le
    # The same as the mount's own view of each lease.
    for lid, le in by_id.items():
        fs = json.loads(read_file(m.p(f".quorumfs/leases/{lid}")))
        assert fs["keys"] == le["keys"] and fs["ttl"] == le["ttl"]


def test_many_leases_list_in_pages(m):
    """More than a LEASE_LIST page (1 MiB) of keys: 300 leases, each with a
    key of about 4000 bytes; the CLI asks page after page and lists every
    lease once, each with its key."""
    parent = "/".join(c * 250 for c in "abcdefghijklmno")  # 3764 bytes, made once
    keys = {}
    for i in range(300):
        key = f"/{parent}/k{i:03d}"
        _, lid = put(m, key, "v", "--ttl", 600)
        keys[lid] = key
    doc, by_id = lease_list_json(m)
    assert len(doc["leases"]) == 300 and set(by_id) == set(keys)
    assert all(by_id[lid]["keys"] == [key] for lid, key in keys.items())
    assert sum(len(k) for k in keys.values()) > 1 << 20
    assert set(lease_list(m)) == set(keys)


# ---- on a cluster ----------------------------------------------------------------


def test_cluster_follower_grants_and_keepalive_outlives_the_leader(cluster, keepalives):
    """Granted and listed through followers; the keepalive, given every
    member, renews through the leader until it is killed, then through the
    others, and the key stays on every mount past several ttls. Stopped, the
    key expires everywhere."""
    c = cluster.start()
    leader = c.leader()
    f1, f2 = c.followers()
    ttl = 4  # renewals every 1.33 s: room for an election (500 ms) between two
    out = c.cli("put", "/svc/web", "h1", "--ttl", ttl, endpoints=[f1]).stdout
    g = re.fullmatch(r"OK revision=(\d+) lease=([0-9a-f]+)\n", out)
    assert g, out
    lid = g.group(2)
    c.converge()
    for n in (leader, f1, f2):
        assert getfattr_lease(c.m(n).p("svc/web")) == lid
    # Linearizable from the other follower right after the write.
    listed = c.cli("lease", "list", endpoints=[f2]).stdout
    assert listed.startswith(f"{lid} ttl=4 ") and "keys=1" in listed, listed
    k = keepalives(c.m(f1), lid, endpoints=c.endpoints([leader, f1, f2]))
    time.sleep(1.5)
    c.kill9(leader)
    survivors = [f1, f2]
    c.wait_leader(among=survivors)
    time.sleep(2.5 * ttl)
    for n in survivors:
        assert os.path.exists(c.m(n).p("svc/web")), n
    rc, lines, err = k.stop()
    assert rc == 0 and len(lines) >= 6, (rc, lines, err)
    t_stop = time.monotonic()
    assert wait_until(lambda: not any(os.path.exists(c.m(n).p("svc/web")) for n in survivors),
                      ttl + ELECTION_MS / 1000 + 3, 0.05)
    assert time.monotonic() - t_stop >= ttl - 1.5  # renewed at most ttl/3 before the stop
    assert c.cli("lease", "list", endpoints=survivors).stdout == ""
