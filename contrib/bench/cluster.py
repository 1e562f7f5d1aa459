#!/usr/bin/python3
"""Benchmarks on a real three-member quorumfs cluster on loopback (members on
127.0.0.1-3, one mount each): sequential latency and 64-writer throughput
through a follower's mount, then failover: kill -9 of the leader, time until
the next write through another member is acknowledged (median of ROUNDS).

usage: cluster.py [ROUNDS]
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchcluster import Cluster, _sigterm  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))


def write(path, value):
    with open(path, "w") as f:
        f.write(value)


def failover(c, rounds):
    times = []
    for r in range(rounds):
        leader = int(c.wait_leader()[1:])
        other = leader % 3 + 1
        path = os.path.join(c.mnt(other), "failover")
        t0 = time.monotonic()
        c.kill(leader)
        while True:
            try:
                write(path, f"round {r}\n")
                break
            except OSError:
                time.sleep(0.01)
        times.append(time.monotonic() - t0)
        c.start_member(leader)
        c.wait_leader()
        time.sleep(1.0)  # the restarted member catches up before the next kill
    return times


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    signal.signal(signal.SIGTERM, _sigterm)
    root = tempfile.mkdtemp(prefix="quorumfs-cluster-bench.")
    c = Cluster(root)
    try:
        leader = int(c.start()[1:])
        follower = leader % 3 + 1
        print(f"== through follower n{follower}'s mount (leader n{leader})")
        subprocess.run(["/usr/bin/python3", os.path.join(BENCH, "latency.py"), c.mnt(follower),
                        "1000"], check=True)
        for writers in (1, 64):
            subprocess.run(["/usr/bin/python3", os.path.join(BENCH, "throughput.py"),
                            c.mnt(follower), str(writers), "5"], check=True)
        print(f"== failover: kill -9 of the leader -> next acknowledged write ({rounds} rounds)")
        ms = sorted(t * 1000 for t in failover(c, rounds))
        print("failover ms: " + " ".join(f"{t:.0f}" for t in ms))
        print(f"failover median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
