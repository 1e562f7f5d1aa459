"""`quorumfs txn` and `quorumfs compact` (SPEC §2.2, §5): compare-and-swap
transactions through the client port, and compaction of the history
through the log.

Most tests run one mounted member with --listen-client; what a txn or a
compaction did is checked through the mount (values, user.quorumfs.*
attributes, /.quorumfs/rev/N) as well as through the CLI. Two tests run on
a 3-member cluster: racing txns through different members, of which
exactly one wins, and a compaction asked of a follower that every member
applies.
"""
import errno
import json
import os
import re
import subprocess
import threading

import pytest

from cluster import cluster, start_with_client_port  # noqa: F401  (cluster is a fixture)
from qfs import QUORUMFS, read_file, wait_until, xattr_int


@pytest.fixture
def m(members):
    return start_with_client_port(members)


def cli(ep, *args, stdin=None, timeout=30):
    return subprocess.run([str(QUORUMFS), *map(str, args), "--endpoints", ep],
                          input=stdin if stdin is not None else "", capture_output=True,
                          text=True, timeout=timeout)


def ok(ep, *args, stdin=None):
    r = cli(ep, *args, stdin=stdin)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert r.stderr == "", r.stderr
    return r.stdout


def fails(ep, *args, stdin=None, code=1):
    """Exits `code` with exactly one line on stderr and nothing on stdout;
    returns the line."""
    r = cli(ep, *args, stdin=stdin)
    assert r.returncode == code, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == "", r.stdout
    return lines[0]


def txn(ep, text):
    """txn with text on stdin -> (succeeded, lines after SUCCESS/FAILURE)."""
    out = ok(ep, "txn", stdin=text).splitlines()
    assert out[0] in ("SUCCESS", "FAILURE"), out
    return out[0] == "SUCCESS", out[1:]


def txn_json(ep, text):
    return json.loads(ok(ep, "txn", "-w", "json", stdin=text))


def put(ep, key, value):
    g = re.fullmatch(r"OK revision=(\d+)\n", ok(ep, "put", key, value))
    return int(g.group(1))


def get(ep, key, *args):
    return ok(ep, "get", key, *args)


def rev_of(m, rel):
    return xattr_int(m.p(rel), "user.quorumfs.revision")


# ---- txn ---------------------------------------------------------------------------

def test_cas_lock(m):
    """create("/lock") = "0": the first txn takes the lock, the next sees it
    taken and runs its failure branch; release is a compare on the value."""
    take = 'create("/lock") = "0"\n\nput /lock "owner {0}"\n\nput /waiting/{0} yes\n'
    assert txn(m.ep, take.format("a")) == (True, [f"OK revision={rev_of(m, 'lock')}"])
    assert read_file(m.p("lock")) == b"owner a"
    held, lines = txn(m.ep, take.format("b"))
    assert not held and len(lines) == 1
    assert read_file(m.p("lock")) == b"owner a"
    assert read_file(m.p("waiting/b")) == b"yes"
    # Only the owner may release it.
    release = 'value("/lock") = "owner {0}"\n\ndel /lock\n'
    assert txn(m.ep, release.format("b")) == (False, [])
    assert os.path.exists(m.p("lock"))
    assert txn(m.ep, release.format("a"))[0]
    assert not os.path.exists(m.p("lock"))
    assert txn(m.ep, take.format("b"))[0]
    assert read_file(m.p("lock")) == b"owner b"


def test_client_port_change_seen_by_stat_on_this_mount(m):
    """A change made through this member's client port is answered once the
    mount's cached dentry and attributes are dropped, so stat right after
    sees it (the kernel caches names for attr_timeout otherwise)."""
    for i in range(60):
        put(m.ep, "/flip", "x" * (i + 1))
        assert os.stat(m.p("flip")).st_size == i + 1, i
        assert txn(m.ep, 'version("/flip") > "0"\n\ndel /flip\n')[0]
        assert not os.path.exists(m.p("flip")), i


def test_value_version_mod_compares(m):
    r1 = put(m.ep, "/k", "v1")
    r2 = put(m.ep, "/k", "v2")
    cases = [
        ('value("/k") = "v2"', True), ('value("/k") = "v1"', False),
        ('val("/k") != "v1"', True), ('value("/k") > "v1"', True),
        ('value("/k") < "v1"', False), ('value("/absent") != "x"', False),
        ('version("/k") = "2"', True), ('ver("/k") = 1', False),
        ('version("/k") > "1"', True), ('version("/absent") = "0"', True),
        (f'create("/k") = "{r1}"', True), (f'c("/k") < "{r1}"', False),
        (f'mod("/k") = "{r2}"', True), (f'mod("/k") > "{r1}"', True),
        (f'm("/k") < "{r2}"', False), ('mod("/absent") = "0"', True),
    ]
    for cmp, want in cases:
        assert txn(m.ep, f"{cmp}\n")[0] == want, cmp
    # All compares must hold.
    assert txn(m.ep, 'value("/k") = "v2"\nversion("/k") = "2"\n')[0]
    assert not txn(m.ep, 'value("/k") = "v2"\nversion("/k") = "3"\n')[0]
    # Compares alone change nothing.
    assert m.revision() == r2


def test_failure_branch_and_json(m):
    put(m.ep, "/cfg/mode", "blue")
    doc = txn_json(m.ep, 'value("/cfg/mode") = "green"\n\nput /cfg/mode red\n\n'
                         'put "/cfg/last seen" "blue, not green"\ndel /cfg/mode\n')
    rev = m.revision()
    assert doc == {"succeeded": False, "revision": rev, "results": [
        {"op": "put", "key": "/cfg/last seen", "revision": rev},
        {"op": "del", "key": "/cfg/mode", "revision": rev}]}
    assert read_file(m.p("cfg/last seen")) == b"blue, not green"
    assert not os.path.exists(m.p("cfg/mode"))
    # A branch with nothing in it changes nothing: the current revision.
    doc = txn_json(m.ep, 'value("/cfg/mode") = "x"\n\nput /cfg/mode x\n')
    assert doc == {"succeeded": False, "revision": rev, "results": []}
    assert m.revision() == rev


def test_one_revision_seen_through_the_mount(m):
    put(m.ep, "/app/old", "o")
    put(m.ep, "/app/tree/a", "1")
    put(m.ep, "/app/tree/b", "2")
    before = m.revision()
    doc = txn_json(m.ep, 'mod("/app/old") > "0"\n\n'
                         'put /app/x "x 1"\nput /app/y "line\\nnext"\nput /app/z/deep z\n'
                         'del /app/old\ndel --prefix /app/tree\n')
    rev = doc["revision"]
    assert doc["succeeded"] and rev == before + 1 == m.revision()
    assert [r["op"] for r in doc["results"]] == ["put", "put", "put", "del", "del"]
    assert doc["results"][4] == {"op": "del", "key": "/app/tree", "prefix": True,
                                 "revision": rev}
    assert read_file(m.p("app/x")) == b"x 1"
    assert read_file(m.p("app/y")) == b"line\nnext"
    for rel in ("app/x", "app/y", "app/z/deep"):
        assert rev_of(m, rel) == rev, rel
    assert sorted(os.listdir(m.p("app"))) == ["x", "y", "z"]
    # The revision before holds none of it, the txn's revision all of it.
    assert sorted(os.listdir(m.p(f".quorumfs/rev/{before}/app"))) == ["old", "tree"]
    assert sorted(os.listdir(m.p(f".quorumfs/rev/{rev}/app"))) == ["x", "y", "z"]
    assert get(m.ep, "/app/x", "--rev", rev) == "x 1"


def test_failed_request_changes_nothing(m):
    put(m.ep, "/d/f", "v")
    before = m.revision()
    line = fails(m.ep, "txn", stdin="\nput /new 1\ndel /missing\n")
    assert line == ("quorumfs: txn: request 2 of the success branch (del /missing) failed: "
                    "no such key; nothing was changed")
    line = fails(m.ep, "txn", stdin='version("/d") > 5\n\n\nput /new 1\nput /d 2\n')
    assert "request 2 of the failure branch (put /d) failed: key is a directory" in line
    line = fails(m.ep, "txn", stdin="\nput /ok 1\nput /.quorumfs/x 1\n")
    assert "request 2 of the success branch (put /.quorumfs/x)" in line and "reserved" in line
    line = fails(m.ep, "txn", stdin="\ndel /\n")
    assert "the root directory cannot be deleted" in line
    line = fails(m.ep, "txn", stdin='value("/a/../b") = "1"\n')
    assert "compare 1 (/a/../b): bad key" in line
    assert m.revision() == before
    assert not os.path.exists(m.p("new")) and not os.path.exists(m.p("ok"))


def test_values_over_the_limit(members):
    m = start_with_client_port(members, "--max-value-bytes", "1000")
    line = fails(m.ep, "txn", stdin=f"\nput /a {'v' * 1001}\n")
    assert "request 1 of the success branch (put /a): value larger than" in line
    line = fails(m.ep, "txn", stdin=f'value("/a") = "{"v" * 1001}"\n')
    assert "compare 1 (/a): value larger than" in line
    # The whole frame over what the member takes: refused, and the
    # connection still answers the next request.
    many = "".join(f"put /k{i} {'v' * 900}\n" for i in range(100))
    line = fails(m.ep, "txn", stdin="\n" + many)
    assert "transaction too large" in line
    assert txn(m.ep, "\nput /small v\n")[0]
    assert read_file(m.p("small")) == b"v"


@pytest.mark.parametrize("text, want", [
    ('\nput /x "abc\n', "line 2: unterminated quote in a value"),
    ('value("/k) = "v"\n', "line 1: expected ')' after the key"),
    ('lease("/k") = "1"\n', "line 1: lease compares are not supported"),
    ('foo("/k") = "1"\n', "line 1: unknown compare 'foo'"),
    ('mod("/k") >= "1"\n', "line 1: unknown compare operator '>='"),
    ('version("/k") = "three"\n', "line 1: version compares with a number"),
    ('\nget /k\n', "line 2: get is not supported in a txn"),
    ('\nput /k a b\n', "line 2: expected the end of the line after the value"),
    ('\nput k v\n', "line 2: keys are absolute paths"),
    ('\nput /a 1\n\nput /b 2\n\nput /c 3\n', "line 6: text after the failure requests"),
    ("\n" + "".join(f"put /k{i} v\n" for i in range(129)),
     "line 130: more than 128 success requests"),
    ("".join(f'mod("/k{i}") > "0"\n' for i in range(129)), "line 129: more than 128 compares"),
])
def test_bad_input(m, text, want):
    before = m.revision()
    line = fails(m.ep, "txn", stdin=text)
    assert line.startswith("quorumfs: txn: " + want), line
    assert m.revision() == before


def test_interactive_prompts(m):
    """On a terminal: etcdctl's prompts on stderr, and the third blank line
    ends the input (no end-of-file needed)."""
    master, slave = os.openpty()
    try:
        p = subprocess.Popen([str(QUORUMFS), "txn", "--endpoints", m.ep], stdin=slave,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(master, b'create("/tty") = "0"\n\nput /tty "typed"\n\n\n')
        out, err = p.communicate(timeout=20)
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 0, err
    assert out.splitlines()[0] == "SUCCESS"
    assert err.splitlines() == ["compares:", "success requests (put, del):",
                                "failure requests (put, del):"]
    assert read_file(m.p("tty")) == b"typed"


def test_help():
    r = subprocess.run([str(QUORUMFS), "txn", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for word in ("value(", "version(", "create(", "mod(", "put KEY VALUE", "del [--prefix] KEY",
                 "get is not supported in a txn", "SUCCESS", "FAILURE", "-w json"):
        assert word in r.stdout, word
    r = subprocess.run([str(QUORUMFS), "compact", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "REV" in r.stdout and "--auto-compact-revisions" in r.stdout
    r = subprocess.run([str(QUORUMFS), "--help"], capture_output=True, text=True)
    assert "txn" in r.stdout and "compact REV" in r.stdout
    assert "not in this build" not in r.stdout + r.stderr


# ---- compact -------------------------------------------------------------------------

def test_compact(m):
    revs = [put(m.ep, "/c/k", f"v{i}") for i in range(6)]
    cut = revs[3]
    # Seen before the compaction, so the kernel may have it cached.
    assert read_file(m.p(f".quorumfs/rev/{revs[1]}/c/k")) == b"v1"
    assert ok(m.ep, "compact", cut) == f"compacted revision {cut}\n"
    assert m.status()["compacted_revision"] == cut
    # Below the cut: a clear refusal from get, ENOENT in the revision view.
    line = fails(m.ep, "get", "/c/k", "--rev", cut - 1)
    assert line == (f"quorumfs: get /c/k: revision {cut - 1} has been compacted "
                    f"(oldest readable: {cut})")
    with pytest.raises(OSError) as e:
        os.listdir(m.p(f".quorumfs/rev/{cut - 1}"))
    assert e.value.errno == errno.ENOENT
    assert not os.path.exists(m.p(f".quorumfs/rev/{revs[0]}/c/k"))
    assert not os.path.exists(m.p(f".quorumfs/rev/{revs[1]}/c/k"))
    # The cut and after stay readable.
    assert get(m.ep, "/c/k", "--rev", cut) == "v3"
    assert read_file(m.p(f".quorumfs/rev/{cut}/c/k")) == b"v3"
    assert read_file(m.p(f".quorumfs/rev/{revs[5]}/c/k")) == b"v5"
    assert read_file(m.p("c/k")) == b"v5"
    assert json.loads(ok(m.ep, "compact", revs[5], "-w", "json")) == {
        "compacted_revision": revs[5]}
    # A watch from below the cut says so.
    r = cli(m.ep, "watch", "/c", "--prefix", "--rev", revs[1], timeout=10)
    assert r.returncode != 0 and "compacted" in r.stderr, r


def test_compact_errors(m):
    cur = [put(m.ep, "/k", f"v{i}") for i in range(3)][-1]
    line = fails(m.ep, "compact", cur + 5)
    assert line == (f"quorumfs: compact {cur + 5}: revision {cur + 5} is past the current "
                    f"revision {cur}")
    ok(m.ep, "compact", cur)
    for rev in (cur, cur - 1):
        line = fails(m.ep, "compact", rev)
        assert line == (f"quorumfs: compact {rev}: revision {rev} is already compacted "
                        f"(compacted revision: {cur})")
    for bad in ("abc", "0", "1x", "99999999999999999999999"):
        line = fails(m.ep, "compact", bad, code=2)
        assert f"got '{bad}'" in line
    fails(m.ep, "compact", code=2)  # no REV
    assert m.status()["compacted_revision"] == cur


# ---- on a cluster --------------------------------------------------------------------

def test_racing_txns_exactly_one_wins(cluster):
    c = cluster.start()
    names = list(c.ms)
    n = 9
    results = [None] * n

    def race(i):
        ep = c.client(names[i % len(names)])
        results[i] = cli(ep, "txn", "-w", "json",
                         stdin=f'create("/lock") = "0"\n\nput /lock "racer {i}"\n\n'
                               f'put /lost/{i} "{i}"\n')
    threads = [threading.Thread(target=race, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    docs = []
    for r in results:
        assert r is not None and r.returncode == 0, r
        docs.append(json.loads(r.stdout))
    winners = [i for i, d in enumerate(docs) if d["succeeded"]]
    assert len(winners) == 1, docs
    w = winners[0]
    # Every txn is its own revision; the winner's is the lock's.
    assert len({d["revision"] for d in docs}) == n
    c.converge()
    for name in names:
        mm = c.m(name)
        assert read_file(mm.p("lock")) == f"racer {w}".encode()
        assert rev_of(mm, "lock") == docs[w]["revision"]
        assert sorted(os.listdir(mm.p("lost"))) == sorted(str(i) for i in range(n) if i != w)


def test_compact_through_a_follower(cluster):
    c = cluster.start()
    leader = c.wait_leader()
    follower = c.followers()[0]
    ep = c.client(follower)
    revs = [put(ep, "/h", f"v{i}") for i in range(4)]
    assert ok(ep, "compact", revs[2]) == f"compacted revision {revs[2]}\n"
    c.converge()
    for name in c.live():
        mm = c.m(name)
        assert wait_until(lambda: c.status(name)["compacted_revision"] == revs[2], 5), name
        assert not os.path.exists(mm.p(f".quorumfs/rev/{revs[1]}"))
        assert read_file(mm.p(f".quorumfs/rev/{revs[2]}/h")) == b"v2"
        line = fails(c.client(name), "get", "/h", "--rev", revs[1])
        assert f"revision {revs[1]} has been compacted (oldest readable: {revs[2]})" in line
    line = fails(c.client(leader), "compact", revs[1])
    assert f"already compacted (compacted revision: {revs[2]})" in line
