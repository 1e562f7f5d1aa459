#!/usr/bin/python3
"""Does a three-member cluster keep its leader while its members take
snapshots of a big store? Starts n1..n3 (benchcluster.py), loads KEYS keys
through the leader's client port (bulk_put.py: every PUT one entry, so each
member snapshots every --snapshot-entries entries all along), runs three
`snapshot save` on the leader, then reports per member: leader changes seen
(the first election counts one), the longest turn of its loop thread (the
bucket of quorumfs_server_loop_busy_duration_seconds it fell in), image
builds and their mean time, and how long applying waited on them.

usage: snapshot_stall.py KEYS [SERVE FLAGS...]
  QUORUMFS=path/to/binary to measure another build.
"""
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchcluster  # noqa: E402
import bulk_put  # noqa: E402

benchcluster.QFS = os.environ.get("QUORUMFS", benchcluster.QFS)


def metrics(c, i):
    with open(os.path.join(c.mnt(i), ".quorumfs", "metrics")) as f:
        out = {}
        for line in f:
            if not line.startswith("#") and " " in line:
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def longest(m, name):
    """The upper bound of the highest non-empty bucket of histogram name."""
    prev, top = 0, "0"
    for k, v in m.items():
        g = re.match(r"quorumfs_%s_bucket\{le=\"([^\"]+)\"\}" % name, k)
        if g and v > prev:
            prev, top = v, g.group(1)
    return top


def main():
    keys = int(sys.argv[1])
    root = tempfile.mkdtemp(prefix="quorumfs-stall.")
    c = benchcluster.Cluster(root, sys.argv[2:])
    try:
        leader = c.start()
        li = int(leader[1:])
        print(f"leader {leader}; loading {keys} keys through it", flush=True)
        sys.argv = ["bulk_put", f"127.0.0.{li}:{c.base + 100 + li}", str(keys), "128", "16"]
        asyncio.run(bulk_put.main())
        for _ in range(3):
            t = time.monotonic()
            subprocess.run([benchcluster.QFS, "snapshot", "save", os.path.join(root, "b.snap"),
                            "--endpoints", f"127.0.0.{li}:{c.base + 100 + li}"], check=True,
                           stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            print(f"snapshot save: {time.monotonic() - t:.2f} s")
        time.sleep(1)
        for i in (1, 2, 3):
            m = metrics(c, i)
            with open(os.path.join(root, f"log{i}")) as f:
                log = f.read()
            n = m.get("quorumfs_server_snapshot_build_duration_seconds_count", 0)
            s = m.get("quorumfs_server_snapshot_build_duration_seconds_sum", 0)
            dn = m.get("quorumfs_server_apply_deferred_duration_seconds_count", 0)
            ds = m.get("quorumfs_server_apply_deferred_duration_seconds_sum", 0)
            print(f"n{i}: leader changes {m['quorumfs_server_leader_changes_seen_total']:.0f}, "
                  f"'leader is now' lines {log.count('leader is now')}, "
                  f"elections {log.count('no leader')}, "
                  f"longest loop turn <= {longest(m, 'server_loop_busy_duration_seconds')} s, "
                  f"'busy for' warnings {log.count('busy for')}, "
                  f"{n:.0f} images, mean {1000 * s / max(n, 1):.0f} ms, "
                  f"{dn:.0f} entries waited, mean {1000 * ds / max(dn, 1):.0f} ms")
    finally:
        c.stop()
        for i in (1, 2, 3):
            shutil.rmtree(os.path.join(root, f"d{i}"), ignore_errors=True)
        print(f"logs in {root}")


if __name__ == "__main__":
    main()
