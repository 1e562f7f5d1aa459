"""Snapshot images are built off the loop thread (fs/server_image.c): a
member keeps sending heartbeats while it serializes its store, and holds
committed entries back until the image is done (fs/server_defer.c).

QFS_TEST_IMAGE_DELAY_MS makes every image build take a second longer, the
time a store of several million keys would take: longer than the election
timeout (500 ms here), so a member that built its image on the loop thread
would stop heartbeats long enough for an election. Meanwhile writes go on
through every member, each checked at once on another member (open() is a
linearizable read point, answered only once that member has applied the
write, so also after any image it was building), and a `snapshot save` runs
beside the members' own snapshots."""
import subprocess
import threading
import time

from cluster import cluster  # noqa: F401  (a fixture)
from qfs import QUORUMFS, read_file, wait_until, write_file

DELAY_MS = 1000
SNAPSHOT_ENTRIES = 150
NAMES = ("n1", "n2", "n3")


def metrics(c, name):
    out = {}
    for line in read_file(c.m(name).p(".quorumfs/metrics")).decode().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def test_snapshots_keep_the_leader_and_reads_linearizable(cluster, monkeypatch):
    monkeypatch.setenv("QFS_TEST_IMAGE_DELAY_MS", str(DELAY_MS))
    c = cluster.start(extra=["--snapshot-entries", str(SNAPSHOT_ENTRIES),
                             "--request-timeout-ms", "8000"])
    leader = c.wait_leader()
    for n in NAMES:
        c.m(n).sh("mkdir -p pre")
    # Keys to snapshot, through every member at once.
    errs = []

    def preload(n, k0):
        for i in range(k0, k0 + 150):
            e = write_file(c.m(n).p(f"pre/k{i:04d}"), f"pre {i}\n" * 4)
            if e is not None:
                errs.append((n, i, e))
    ths = [threading.Thread(target=preload, args=(n, 1000 * j + 200 * t))
           for j, n in enumerate(NAMES) for t in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    assert not errs, errs
    before = {n: metrics(c, n) for n in NAMES}
    logged = {n: len(c.m(n).log_text(run=True)) for n in NAMES}

    # Writers on every member; each write checked at once on the next one.
    stop = threading.Event()
    stale, done = [], {n: 0 for n in NAMES}

    def writer(i, n):
        other = NAMES[(i + 1) % 3]
        k = 0
        while not stop.is_set():
            rel = f"w{i}-{k:04d}"
            value = f"{n} {k}\n".encode()
            e = write_file(c.m(n).p(rel), value)
            if e is not None:
                errs.append((n, rel, e))
                return
            got = read_file(c.m(other).p(rel))
            if got != value:
                stale.append((n, other, rel, got, value))
            done[n] += 1
            k += 1

    def filler(n, t):
        k = 0
        while not stop.is_set():
            e = write_file(c.m(n).p(f"pre/f{t}-{k % 40}"), f"{k}\n")
            if e is not None:
                errs.append((n, t, k, e))
                return
            k += 1
    ths = [threading.Thread(target=writer, args=(i, n)) for i, n in enumerate(NAMES)]
    ths += [threading.Thread(target=filler, args=(n, f"{n}{t}"))
            for n in NAMES for t in range(3)]
    for t in ths:
        t.start()
    t0 = time.monotonic()
    try:
        save = c.cli("snapshot", "save", c.members.tmp_path / "b.snap", endpoints=[leader],
                     check=False)

        def snapshotted_twice():
            return all(metrics(c, n)["quorumfs_server_snapshots_total"]
                       >= before[n]["quorumfs_server_snapshots_total"] + 2 for n in NAMES)
        assert wait_until(snapshotted_twice, 20, interval=0.2), \
            {n: metrics(c, n)["quorumfs_server_snapshots_total"] for n in NAMES}
    finally:
        stop.set()
        for t in ths:
            t.join(30)
    elapsed = time.monotonic() - t0
    assert save.returncode == 0, save.stderr
    assert not errs, errs
    assert not stale, stale[:5]
    assert all(done[n] > 0 for n in NAMES), done

    after = {n: metrics(c, n) for n in NAMES}
    for n in NAMES:
        a, b = after[n], before[n]
        builds = (a["quorumfs_server_snapshot_build_duration_seconds_count"]
                  - b["quorumfs_server_snapshot_build_duration_seconds_count"])
        took = (a["quorumfs_server_snapshot_build_duration_seconds_sum"]
                - b["quorumfs_server_snapshot_build_duration_seconds_sum"])
        # Images longer than the election timeout were built ...
        assert builds >= 2 and took >= builds * DELAY_MS / 1000, (n, builds, took)
        # ... while writes waited for them ...
        assert a["quorumfs_server_apply_deferred_duration_seconds_count"] > \
            b["quorumfs_server_apply_deferred_duration_seconds_count"], n
        # ... and nobody saw a leader change.
        assert a["quorumfs_server_leader_changes_seen_total"] == \
            b["quorumfs_server_leader_changes_seen_total"], (n, elapsed)
        news = c.m(n).log_text(run=True)[logged[n]:]
        assert "no leader" not in news and "leader is now" not in news, (n, news[-2000:])
    assert c.leader() == leader
    c.assert_same()


def test_stop_while_an_image_is_built_waits_for_it(cluster, monkeypatch, tmp_path):
    """SIGTERM while `snapshot save` has an image built: the member finishes
    the image, applies the write that waited for it (its writer hears it
    succeeded), then exits cleanly; the write is there after a restart."""
    monkeypatch.setenv("QFS_TEST_IMAGE_DELAY_MS", "1500")
    c = cluster.start(n=1)
    m = c.m("n1")
    assert write_file(m.p("before"), b"before\n") is None
    save = subprocess.Popen([str(QUORUMFS), "snapshot", "save", str(tmp_path / "b.snap"),
                             "--endpoints", c.endpoints()], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # past the read point: the image is being built (1.5 s)
    assert save.poll() is None
    result = {}
    writer = threading.Thread(
        target=lambda: result.setdefault("err", write_file(m.p("during"), b"during\n")))
    writer.start()
    time.sleep(0.3)  # its commit waits for the image
    assert writer.is_alive(), result
    t = time.monotonic()
    m.stop()  # exit status 0, mount gone
    waited = time.monotonic() - t
    writer.join(10)
    assert result == {"err": None}, result
    out, errout = save.communicate(timeout=10)
    print(f"stopped after {waited:.2f} s; save: {save.returncode} {out.strip()} {errout.strip()}")
    # The stop came about 0.6 s into a 1.5 s image: it waited for the rest.
    assert waited > 0.4, waited
    c.restart("n1")
    assert read_file(m.p("during")) == b"during\n"
    assert read_file(m.p("before")) == b"before\n"
