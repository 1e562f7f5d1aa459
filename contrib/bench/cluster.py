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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QFS = os.path.join(REPO, "bin", "quorumfs")
BENCH = os.path.join(REPO, "contrib", "bench")
BASE = 24800 + os.getpid() % 100 * 4  # peer ports; clients at +1000


class Cluster:
    def __init__(self, root):
        self.root = root
        self.procs = {}
        self.ic = ",".join(f"n{i}=127.0.0.{i}:{BASE + i}" for i in (1, 2, 3))

    def mnt(self, i):
        return os.path.join(self.root, f"m{i}")

    def start(self, i):
        os.makedirs(self.mnt(i), exist_ok=True)
        log = open(os.path.join(self.root, f"log{i}"), "a")
        self.procs[i] = subprocess.Popen(
            [QFS, "serve", "--name", f"n{i}", "--data-dir", os.path.join(self.root, f"d{i}"),
             "--mount", self.mnt(i), "--listen-peer", f"127.0.0.{i}:{BASE + i}",
             "--listen-client", f"127.0.0.{i}:{BASE + 1000 + i}", "--initial-cluster", self.ic],
            stderr=log)

    def status(self, i):
        import json
        with open(os.path.join(self.mnt(i), ".quorumfs", "status")) as f:
            return json.load(f)

    def wait_leader(self, members=(1, 2, 3), timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            for i in members:
                try:
                    if self.status(i)["role"] == "leader":
                        return i
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        raise RuntimeError("no leader")

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt(i)], stderr=subprocess.DEVNULL)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i, p in self.procs.items():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
            subprocess.run(["fusermount3", "-u", "-z", self.mnt(i)], stderr=subprocess.DEVNULL)


def write(path, value):
    with open(path, "w") as f:
        f.write(value)


def failover(c, rounds):
    times = []
    for r in range(rounds):
        leader = c.wait_leader()
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
        c.start(leader)
        c.wait_leader()
        time.sleep(1.0)  # the restarted member catches up before the next kill
    return times


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    root = tempfile.mkdtemp(prefix="quorumfs-cluster-bench.")
    c = Cluster(root)
    try:
        for i in (1, 2, 3):
            c.start(i)
        leader = c.wait_leader()
        follower = leader % 3 + 1
        print(f"== through follower n{follower}'s mount (leader n{leader})")
        subprocess.run(["/usr/bin/python3", os.path.join(BENCH, "latency.py"), c.mnt(follower),
                        "1000"], check=True)
        for writers in (1, 64):
            subprocess.run(["/usr/bin/python3", os.path.join(BENCH, "throughput.py"),
                            c.mnt(follower), str(writers), "5"], check=True)
        print(f"== failover: kill -9 of the leader -> next acknowledged write ({rounds} rounds)")
        times = failover(c, rounds)
        ms = sorted(t * 1000 for t in times)
        print("failover ms: " + " ".join(f"{t:.0f}" for t in ms))
        print(f"failover median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
