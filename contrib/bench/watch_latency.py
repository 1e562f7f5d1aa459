#!/usr/bin/python3
"""Cross-node watch latency (SPEC §3.6, §8): a three-member quorumfs cluster on
loopback (members on 127.0.0.1-3, one mount each), `inotifywait -m` on n3,
N sequential writes (open/write/close) of one key through n1's mount; for
each, the time from close() returning on n1 (and from open() being called)
to inotifywait printing the CLOSE_WRITE on n3. By default n2 is made the
leader (`quorumfs leader transfer`), so writer and watcher are followers.
Prints the median, p99 and max over N, and how many events were missing or
duplicated (each write must give exactly one).

Everything (daemons, mounts, inotifywait, the temporary directory) is
cleaned up on exit, also on an error, Ctrl-C or SIGTERM.

usage: watch_latency.py [N] [--leader 1|2|3] [--election-ms MS] [--heartbeat-ms MS] [--keep]
"""
import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchcluster import Cluster, MountWatch, _sigterm, write_file  # noqa: E402
import workloads as wl  # noqa: E402


def run(c, n):
    d1, d3 = os.path.join(c.mnt(1), "watch-latency"), os.path.join(c.mnt(3), "watch-latency")
    os.mkdir(d1)
    end = time.monotonic() + 5
    while not os.path.isdir(d3):
        if time.monotonic() > end:
            raise RuntimeError("the directory did not appear on n3")
        time.sleep(0.01)
    w = MountWatch(c.mnt(3), "/watch-latency")
    try:
        return wl.watch_latency(lambda i: write_file(os.path.join(d1, "key"), f"value {i}\n"),
                                w, n, key="/watch-latency/key")
    finally:
        w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=1000)
    ap.add_argument("--election-ms", type=int)
    ap.add_argument("--heartbeat-ms", type=int)
    ap.add_argument("--leader", type=int, choices=(1, 2, 3), default=2,
                    help="member to lead (default 2: the writer and the watcher are followers)")
    ap.add_argument("--keep", action="store_true", help="keep the logs directory")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    extra = []
    if a.election_ms:
        extra += ["--election-ms", str(a.election_ms)]
    if a.heartbeat_ms:
        extra += ["--heartbeat-ms", str(a.heartbeat_ms)]
    root = tempfile.mkdtemp(prefix="quorumfs-watch-bench.")
    c = Cluster(root, extra)
    try:
        c.start()
        leader = c.make_leader(a.leader)
        print(f"3 members (leader {leader}{', ' + ' '.join(extra) if extra else ''}): "
              f"{a.n} writes on n1, CLOSE_WRITE seen by inotifywait on n3")
        lat, whole, missing, extra_ev = run(c, a.n)
        for label, xs in (("close() returned on n1 -> CLOSE_WRITE on n3", lat),
                          ("open() called on n1   -> CLOSE_WRITE on n3", whole)):
            ms = sorted(x * 1000 for x in xs)
            print(f"{label}: median {statistics.median(ms):.3f} ms, p99 {wl.pct(ms, 0.99):.3f} ms, "
                  f"min {ms[0]:.3f} ms, max {ms[-1]:.3f} ms (n={len(ms)})")
        print(f"missing events {missing}, extra events {extra_ev} "
              "(a negative time: n3 had the event before n1's close() returned)")
        errs = c.errors()
        if errs:
            print("daemon errors:\n  " + "\n  ".join(errs[:10]))
        return 1 if missing or extra_ev else 0
    finally:
        c.stop()
        if a.keep:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
