"""Operator commands on data: check and dump-wal (offline), snapshot save
(online backup) and snapshot restore (a new cluster from it) (SPEC §2.2, §5)."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading

import pytest

from cluster import Cluster, cluster  # noqa: F401  (a fixture)
from qfs import QUORUMFS, WAL_HEADER, wait_until, wal_records, write_file


def run(*args, timeout=60):
    return subprocess.run([str(QUORUMFS), *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def fingerprint(data_dir):
    """{relative path: sha256} of every file in a data dir."""
    return {str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data_dir.rglob("*")) if p.is_file()}


def one_error_line(r, *words):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], (w, r.stderr)
    return lines[0]


def stopped_member(members, n=20):
    """A single member that wrote n files and was then killed (so its WAL,
    not a snapshot, holds them)."""
    m = members.start("n1")
    for i in range(n):
        assert write_file(m.p(f"e{i:02d}"), f"entry {i}\n") is None
    m.kill9()
    return m


# -- check --------------------------------------------------------------------

def test_check_clean_data_dir_reads_only(members):
    m = members.start("n1", "--snapshot-entries", "10")
    for i in range(25):
        assert write_file(m.p(f"k{i}"), f"v{i}") is None
    m.stop()
    before = fingerprint(m.data_dir)
    r = run("check", m.data_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "ok"
    assert re.search(r"snap/[0-9a-f]{16}-[0-9a-f]{16}\.snap: index \d+, term \d+, .*: ok",
                     r.stdout), r.stdout
    assert "hard state: term" in r.stdout
    rep = json.loads(run("check", m.data_dir, "-w", "json").stdout)
    assert rep["ok"] and rep["problems"] == []
    assert rep["snapshot"]["members"][0]["name"] == "n1"
    assert rep["wal"]["hard_state"]["term"] >= 1
    assert rep["wal"]["hard_state"]["vote"] == "n1"
    assert rep["wal"]["last_index"] >= rep["snapshot"]["index"]
    assert fingerprint(m.data_dir) == before, "check changed the data dir"
    m.restart()
    assert m.sh("cat k24").stdout == "v24"


def test_check_refuses_a_running_member_dump_warns(member):
    member.sh("echo v > k")
    r = run("check", member.data_dir)
    assert r.returncode == 1
    one_error_line(r, "in use", "stop the member first")
    r = run("dump-wal", member.data_dir)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "put /k" in r.stdout


def test_check_names_file_and_offset_of_damage(members):
    m = stopped_member(members)
    seg = max(m.wal_files(), key=lambda s: len(wal_records(s)))
    recs = wal_records(seg)
    off, length = recs[len(recs) // 2]
    data = bytearray(seg.read_bytes())
    data[off + WAL_HEADER + length // 2] ^= 0x5A
    seg.write_bytes(bytes(data))
    before = fingerprint(m.data_dir)

    r = run("check", m.data_dir)
    assert r.returncode == 1
    line = one_error_line(r, seg.name, f"offset {off} ", "bad record CRC")
    assert "damaged" in line
    assert f"DAMAGED: wal: {m.data_dir}/wal/{seg.name}" in r.stdout
    rep = json.loads(run("check", m.data_dir, "-w", "json").stdout)
    assert not rep["ok"] and seg.name in rep["problems"][0]
    # dump-wal shows what comes before the damage, then names it.
    r = run("dump-wal", m.data_dir)
    assert r.returncode == 1
    one_error_line(r, seg.name, f"offset {off} ")
    shown = [l for l in r.stdout.splitlines() if l.startswith(f"wal/{seg.name}:")]
    assert shown and all(int(l.split(":")[1].split()[0]) < off for l in shown)
    assert fingerprint(m.data_dir) == before


def test_check_reports_a_torn_tail_as_torn(members):
    m = stopped_member(members)
    seg = m.wal_files()[-1]
    off, length = wal_records(seg)[-1]
    with open(seg, "r+b") as f:
        f.truncate(off + WAL_HEADER + length - 3)
    size = seg.stat().st_size

    r = run("check", m.data_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"torn tail at offset {off} " in r.stdout
    assert "DAMAGED" not in r.stdout and r.stderr == ""
    rep = json.loads(run("check", m.data_dir, "-w", "json").stdout)
    assert rep["ok"] and rep["wal"]["torn"]["offset"] == off
    assert rep["wal"]["torn"]["file"] == f"wal/{seg.name}"
    assert seg.stat().st_size == size, "check repaired the tail: it must only read"
    m.restart()  # the member itself truncates it
    assert run("check", m.data_dir).returncode == 1  # running now
    m.stop()
    r = run("check", m.data_dir)
    assert r.returncode == 0 and "torn" not in r.stdout


def test_check_refuses_what_is_not_a_data_dir(tmp_path):
    r = run("check", tmp_path)
    assert r.returncode == 1
    one_error_line(r, "not a quorumfs data dir")
    r = run("check", tmp_path / "missing")
    assert r.returncode == 1
    one_error_line(r, "missing")
    r = run("check")
    assert r.returncode == 2
    one_error_line(r, "missing DATA_DIR")
    r = run("dump-wal", tmp_path, "--endpoints", "127.0.0.1:1")
    assert r.returncode == 2
    one_error_line(r, "--endpoints")
    assert run("check", "--help").returncode == 0


# -- dump-wal -------------------------------------------------------------------

def test_dump_wal_shows_the_puts(members):
    m = members.start("n1")
    m.sh("mkdir conf && echo 5432 > conf/port && mv conf/port conf/pg && rm conf/pg")
    m.stop()
    r = run("dump-wal", m.data_dir)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    # Nothing in this data dir names the member (no snapshot, no address
    # published): its id stands for it.
    assert re.search(r"entry index=1 term=1 conf bootstrap: members [0-9a-f]{16}\n", text), text
    for op in ("put /conf (dir", "put /conf/port (file, 5 bytes)", "rename /conf/port -> /conf/pg",
               "delete /conf/pg", "hardstate term="):
        assert op in text, (op, text)
    lines = [json.loads(l) for l in run("dump-wal", m.data_dir, "-w", "json").stdout.splitlines()]
    entries = [l for l in lines if l["record"] == "entry" and l.get("kind") == "txn"]
    puts = [op for e in entries for op in e["then"] if op["op"] == "put"]
    assert {"op": "put", "key": "/conf/port", "type": "file", "value_len": 5} in puts
    assert all(l["file"].startswith("wal/") and l["offset"] >= 0 for l in lines)
    idx = [l["index"] for l in lines if l["record"] == "entry"]
    assert idx == sorted(idx) and idx[0] == 1


# -- snapshot save ----------------------------------------------------------------

def writer_thread(c, name, stop, acked):
    """Writes w/<i> through `name`'s mount until stop is set; acked gets the
    names whose close() returned."""
    def loop():
        i = 0
        while not stop.is_set():
            if write_file(c.m(name).p(f"w/{i:05d}"), f"w{i}") is None:
                acked.append(f"w/{i:05d}")
            i += 1
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def as_data_dir(backup, tmp, save):
    """A data dir holding only the backup as its snapshot (no WAL), for `check`."""
    d = tmp / "as-data-dir"
    (d / "snap").mkdir(parents=True)
    (d / "snap" / f"{save['index']:016x}-{save['term']:016x}.snap").write_bytes(
        backup.read_bytes())
    return d


def test_save_from_a_follower_while_writes_run(cluster, tmp_path):
    c = cluster.start()
    c.m("n1").sh("mkdir w conf && echo 1 > conf/a")
    stop, acked = threading.Event(), []
    t = writer_thread(c, c.leader(), stop, acked)
    try:
        assert wait_until(lambda: len(acked) >= 50, 20)
        follower = c.followers()[0]
        backup = tmp_path / "b.snap"
        before = len(acked)
        save = c.cli_json("snapshot", "save", backup, endpoints=[follower])
        after = len(acked)
    finally:
        stop.set()
        t.join(10)
    assert save["endpoint"] == c.client(follower)
    # Linearizable: every write acknowledged before the request is in it.
    assert save["revision"] >= 2 + before and save["index"] > 0 and save["term"] >= 1
    assert save["size"] > save["compressed"] > 0
    # The backup is a snapshot file like a member's own: check reads it
    # (and misses the WAL a data dir would have beside it).
    rep = json.loads(run("check", as_data_dir(backup, tmp_path, save), "-w", "json").stdout)
    assert [s["ok"] for s in rep["snapshots"]] == [True]
    assert len(rep["problems"]) == 1 and "wal is missing" in rep["problems"][0]
    snap = rep["snapshot"]
    assert (snap["revision"], snap["index"], snap["keys"]) == \
        (save["revision"], save["index"], save["keys"])
    assert sorted(m["name"] for m in snap["members"]) == ["n1", "n2", "n3"]
    assert after >= before
    human = c.cli("snapshot", "save", backup).stdout
    assert re.match(rf"saved {re.escape(str(backup))} from \S+: revision \d+, index \d+ "
                    r"\(term \d+\), \d+ keys, \d+ leases, ", human), human


def test_save_failures_leave_the_old_backup(cluster, tmp_path):
    c = cluster.start(n=1)
    backup = tmp_path / "b.snap"
    c.cli("snapshot", "save", backup)
    old = backup.read_bytes()
    # Nobody answers: one line, and the old backup is still whole.
    r = run("snapshot", "save", backup, "--endpoints", "127.0.0.1:1", "--timeout-ms", "2000")
    assert r.returncode == 1
    one_error_line(r, "127.0.0.1:1")
    assert backup.read_bytes() == old
    # Not a file name; a directory that does not exist.
    r = c.cli("snapshot", "save", tmp_path, check=False)
    assert r.returncode == 1 and "is a directory" in r.stderr
    r = c.cli("snapshot", "save", tmp_path / "nope" / "b.snap", check=False)
    assert r.returncode == 1
    one_error_line(r, str(tmp_path / "nope"))
    r = run("snapshot", "save")
    assert r.returncode == 2
    one_error_line(r, "missing FILE")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("tmp-")) == []


# -- snapshot restore ---------------------------------------------------------------

def restored_cluster(members, backup, names=("r1", "r2", "r3"), token="restored"):
    """A new cluster whose every member is restored from backup, started."""
    c2 = Cluster(members)
    for i, n in enumerate(names, 1):
        c2.index[n] = i
    initial = ",".join(f"{n}={c2.peer(n)}" for n in names)
    outs = []
    for i, n in enumerate(names, 1):
        m = c2._create(n, i, ["--initial-cluster", initial, "--cluster-token", token])
        r = run("snapshot", "restore", backup, "--data-dir", m.data_dir, "--name", n,
                "--initial-cluster", initial, "-w", "json")
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    for n in names:
        c2.m(n).spawn()
    for n in names:
        c2.m(n).wait_ready()
    c2.wait_leader()
    return c2, outs


def inodes(mnt, keys):
    return {k: os.stat(mnt / k.lstrip("/"), follow_symlinks=False).st_ino for k in keys}


def test_restore_a_new_cluster_from_a_save(cluster, members, tmp_path):
    c = cluster.start()
    n1 = c.m("n1")
    n1.sh("mkdir -p conf/web w && echo 8080 > conf/web/port && echo x > conf/old"
          " && ln -s web/port conf/link && mv conf/old conf/renamed && chmod 600 conf/renamed"
          " && setfattr -n user.owner -v ops conf/web/port && echo gone > tmp && rm tmp")
    c.cli("put", "/svc/web/h1", "10.0.0.1", "--ttl", "300")
    stop, acked = threading.Event(), []
    t = writer_thread(c, c.leader(), stop, acked)
    try:
        assert wait_until(lambda: len(acked) >= 30, 20)
        backup = tmp_path / "backup.snap"
        save = c.cli_json("snapshot", "save", backup, endpoints=[c.followers()[0]])
        n = len(acked)
        assert wait_until(lambda: len(acked) > n + 10, 10), "writes went on after the save"
    finally:
        stop.set()
        t.join(10)
    rev = save["revision"]
    old = c.cli_json("get", "/", "--prefix", "--rev", rev)
    assert old["revision"] == rev
    keys = [kv["key"] for kv in old["kvs"] if kv["key"] != "/"]
    assert "/w" in keys and any(k.startswith("/w/") for k in keys)
    # Writes only create keys: whatever existed at the save still has the
    # inode it had then.
    old_inodes = inodes(n1.mnt, keys)
    old_leases = c.cli_json("lease", "list")["leases"]

    c2, outs = restored_cluster(members, backup)
    for o in outs:
        assert (o["revision"], o["index"], o["keys"]) == \
            (save["revision"], save["index"], save["keys"])
        assert sorted(o["members"]) == ["r1", "r2", "r3"]
    assert c2.converge() == rev, "the new cluster starts at the saved revision"
    new = c2.cli_json("get", "/", "--prefix")
    assert new["revision"] == rev
    assert new["kvs"] == old["kvs"], "keys, values, create/mod revisions, versions"
    for n in ("r1", "r2", "r3"):
        assert inodes(c2.m(n).mnt, keys) == old_inodes, n
    r1 = c2.m("r1")
    assert r1.sh("cat conf/link conf/renamed").stdout == "8080\nx\n"
    assert os.getxattr(r1.p("conf/web/port"), "user.owner") == b"ops"
    assert oct(os.stat(r1.p("conf/renamed")).st_mode & 0o777) == "0o600"
    # Leases are in it, keys attached; membership is the new one.
    new_leases = c2.cli_json("lease", "list")["leases"]
    assert [(l["id"], l["keys"]) for l in new_leases] == \
        [(l["id"], l["keys"]) for l in old_leases] == [(old_leases[0]["id"], ["/svc/web/h1"])]
    assert c2.member_list() == {"r1": "voter", "r2": "voter", "r3": "voter"}
    # History before the save is there too, and the revisions go on from it.
    first = next(kv for kv in old["kvs"] if kv["key"] == "/conf/web/port")
    assert c2.cli("get", "/conf/web/port", "--rev", first["create_revision"]).stdout == "8080\n"
    assert "revision=%d" % (rev + 1) in c2.cli("put", "/after", "v").stdout
    assert c.status("n1")["revision"] > rev  # the old cluster went on by itself
    problems = c2.shutdown()
    assert not problems, problems
    r = run("check", r1.data_dir)
    assert r.returncode == 0, r.stdout + r.stderr


def test_restore_refuses_bad_input_and_changes_nothing(cluster, tmp_path):
    c = cluster.start(n=1)
    c.m("n1").sh("echo v > k")
    backup = tmp_path / "b.snap"
    save = c.cli_json("snapshot", "save", backup)
    good = backup.read_bytes()
    target = tmp_path / "new"

    def restore(f, *extra, data_dir=target):
        return run("snapshot", "restore", f, "--data-dir", data_dir, "--name", "x", *extra)

    # A damaged backup: a flipped byte, cut short, not a backup at all.
    bad = tmp_path / "bad.snap"
    for data, word in ((good[:60] + bytes([good[60] ^ 1]) + good[61:], "CRC"),
                       (good[:len(good) // 2], "truncated"),
                       (b"hello\n" * 20, "not a quorumfs snapshot")):
        bad.write_bytes(data)
        r = restore(bad)
        assert r.returncode == 1
        one_error_line(r, str(bad), word, "nothing restored")
        assert not target.exists()
    # A data dir that is not empty (a member's, here) is left alone.
    m = c.m("n1")
    before = fingerprint(m.data_dir)
    r = restore(backup, data_dir=m.data_dir)
    assert r.returncode == 1
    one_error_line(r, "is not empty")
    assert fingerprint(m.data_dir) == before
    # Flags.
    r = run("snapshot", "restore", backup, "--name", "x")
    assert r.returncode == 2
    one_error_line(r, "missing --data-dir")
    r = run("snapshot", "restore", backup, "--data-dir", target)
    assert r.returncode == 2
    one_error_line(r, "missing --name")
    r = restore(backup, "--initial-cluster", "a=127.0.0.1:1,b=127.0.0.1:2")
    assert r.returncode == 1
    one_error_line(r, "does not name this member (x)")
    r = restore(backup, "--initial-cluster", "x=nowhere")
    assert r.returncode == 1
    one_error_line(r, "is not NAME=IP:PORT")
    assert not target.exists()
    # An empty dir is fine, and what it makes passes check.
    target.mkdir()
    r = restore(backup, "-w", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["revision"] == save["revision"]
    rep = json.loads(run("check", target, "-w", "json").stdout)
    assert rep["ok"] and rep["snapshot"]["members"][0]["name"] == "x"
    assert rep["wal"]["hard_state"] == {"term": save["term"], "vote": None,
                                        "commit": save["index"]}


@pytest.mark.expect_errors
def test_a_half_restored_data_dir_does_not_start(cluster, members, tmp_path):
    """A crash between restore's snapshot and its WAL leaves a data dir that
    check calls damaged and a member refuses, rather than one that starts
    empty."""
    c = cluster.start(n=1)
    c.m("n1").sh("echo v > k")
    backup = tmp_path / "b.snap"
    c.cli("snapshot", "save", backup)
    m = members.create("x")
    assert run("snapshot", "restore", backup, "--data-dir", m.data_dir, "--name", "x") \
        .returncode == 0
    shutil.rmtree(m.data_dir / "wal")
    r = run("check", m.data_dir)
    assert r.returncode == 1 and "wal is missing" in r.stderr
    m.spawn()
    assert m.wait_exit() != 0
    assert "do not fit together; refusing to start" in m.log_text()
