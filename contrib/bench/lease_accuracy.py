#!/usr/bin/python3
"""Lease expiry accuracy (SPEC §3.5): on a three-member quorumfs cluster on
loopback (contrib/bench/benchcluster.py), SAMPLES times: write a fresh file
through n1, grant it a lease of TTL seconds (`setxattr user.quorumfs.ttl`
through n1's mount), and time the DELETE that `inotifywait` on n3 prints
when the leader expires the lease. Prints, per sample, the expected
lifetime (TTL) and the observed one (grant acknowledged -> DELETE on n3),
then the median and max of observed - expected. The lease starts when the
grant commits, between the setxattr call and its return, so the error is
measured from the return (and the call's own duration is printed).

Everything is cleaned up on exit, also on an error, Ctrl-C or SIGTERM.

usage: lease_accuracy.py [SAMPLES] [--ttl S] [--election-ms MS] [--leader 1|2|3] [--keep]
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

from benchcluster import Cluster, InotifyWait, _sigterm  # noqa: E402


def run(c, samples, ttl):
    d1, d3 = os.path.join(c.mnt(1), "lease-accuracy"), os.path.join(c.mnt(3), "lease-accuracy")
    os.mkdir(d1)
    end = time.monotonic() + 5
    while not os.path.isdir(d3):
        if time.monotonic() > end:
            raise RuntimeError("the directory did not appear on n3")
        time.sleep(0.01)
    w = InotifyWait(d3, ["delete"])
    rows = []
    try:
        for i in range(samples):
            name = f"s{i}"
            with open(os.path.join(d1, name), "w") as f:
                f.write(f"sample {i}\n")
            t0 = time.monotonic()
            os.setxattr(os.path.join(d1, name), "user.quorumfs.ttl", str(ttl).encode())
            t1 = time.monotonic()
            ev = w.next(ttl + 30)
            if ev is None:
                raise RuntimeError(f"sample {i}: no DELETE within {ttl + 30} s")
            if ev[2].rsplit("/", 1)[-1] != name:
                raise RuntimeError(f"sample {i}: unexpected event {ev}")
            rows.append((ev[0] - t1, t1 - t0))
            print(f"sample {i + 1:2}: expected {ttl:.3f} s, observed {ev[0] - t1:.3f} s "
                  f"({(ev[0] - t1 - ttl) * 1000:+.1f} ms; setxattr took {(t1 - t0) * 1000:.1f} ms)",
                  flush=True)
        time.sleep(0.5)
        extra = w.q.qsize()
    finally:
        w.close()
    return rows, extra


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", nargs="?", type=int, default=20)
    ap.add_argument("--ttl", type=float, default=2.0)
    ap.add_argument("--election-ms", type=int)
    ap.add_argument("--leader", type=int, choices=(1, 2, 3), default=2,
                    help="member to lead (default 2: granter and watcher are followers)")
    ap.add_argument("--keep", action="store_true", help="keep the logs directory")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    extra = ["--election-ms", str(a.election_ms)] if a.election_ms else []
    root = tempfile.mkdtemp(prefix="quorumfs-lease-bench.")
    c = Cluster(root, extra)
    try:
        c.start()
        leader = c.make_leader(a.leader)
        print(f"3 members (leader {leader}{', ' + ' '.join(extra) if extra else ''}): "
              f"{a.samples} leases of {a.ttl} s granted through n1, expiry seen on n3")
        rows, extra_ev = run(c, a.samples, a.ttl)
        err = sorted((obs - a.ttl) * 1000 for obs, _ in rows)
        print(f"observed - expected over {len(err)} samples: median {statistics.median(err):+.1f} ms, "
              f"min {err[0]:+.1f} ms, max {err[-1]:+.1f} ms; extra DELETE events {extra_ev}")
        errs = c.errors()
        if errs:
            print("daemon errors:\n  " + "\n  ".join(errs[:10]))
        return 1 if extra_ev or err[0] < 0 else 0
    finally:
        c.stop()
        if a.keep:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
