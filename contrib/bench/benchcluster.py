"""A three-member quorumfs cluster on loopback for the benchmarks: n1..n3 on
127.0.0.1-3 (each on its own address), one mount each, free ports picked at
random, every member's log in the cluster's directory. Used by cluster.py,
watch_latency.py and lease_accuracy.py.
"""
import json
import os
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QFS = os.path.join(REPO, "bin", "quorumfs")


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


class Cluster:
    """n1..n3 on 127.0.0.1-3; peer port base+i, client port base+100+i."""

    def __init__(self, root, extra=()):
        self.root = root
        self.extra = list(extra)
        self.procs = {}
        self.base = self._free_base()
        self.ic = ",".join(f"n{i}=127.0.0.{i}:{self.base + i}" for i in (1, 2, 3))

    @staticmethod
    def _free_base():
        import random
        import socket
        rng = random.Random(os.getpid() ^ time.monotonic_ns())
        for _ in range(200):
            base = rng.randrange(12000, 19800, 200)
            ok = True
            for i in (1, 2, 3):
                for port in (base + i, base + 100 + i):
                    s = socket.socket()
                    try:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s.bind((f"127.0.0.{i}", port))
                    except OSError:
                        ok = False
                    finally:
                        s.close()
            if ok:
                return base
        raise RuntimeError("no free ports")

    def mnt(self, i):
        return os.path.join(self.root, f"m{i}")

    def start_member(self, i):
        os.makedirs(self.mnt(i), exist_ok=True)
        with open(os.path.join(self.root, f"log{i}"), "ab") as log:
            self.procs[i] = subprocess.Popen(
                [QFS, "serve", "--name", f"n{i}", "--data-dir",
                 os.path.join(self.root, f"d{i}"), "--mount", self.mnt(i),
                 "--listen-peer", f"127.0.0.{i}:{self.base + i}",
                 "--listen-client", f"127.0.0.{i}:{self.base + 100 + i}",
                 "--initial-cluster", self.ic, *self.extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def start(self):
        """Starts all three; returns the leader's name once all agree on one."""
        for i in (1, 2, 3):
            self.start_member(i)
        return self.wait_leader()

    def wait_leader(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            sts = [self.status(i) for i in (1, 2, 3)]
            for i, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"n{i} exited {p.returncode}; see {self.root}/log{i}")
            if all(sts) and len({s["leader"] for s in sts}) == 1 and sts[0]["leader"]:
                return sts[0]["leader"]
            time.sleep(0.05)
        raise RuntimeError(f"no leader all members agree on after {timeout} s")

    def kill(self, i):
        """kill -9 of n{i}, then the dead mount goes."""
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt(i)], stderr=subprocess.DEVNULL)

    def endpoints(self):
        return ",".join(f"127.0.0.{i}:{self.base + 100 + i}" for i in (1, 2, 3))

    def make_leader(self, i):
        """Hands leadership to n{i} (quorumfs leader transfer); returns the leader."""
        if self.status(i)["role"] != "leader":
            subprocess.run([QFS, "leader", "transfer", f"n{i}", "--endpoints", self.endpoints()],
                           check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            sts = [self.status(j) for j in (1, 2, 3)]
            if all(sts) and {s["leader"] for s in sts} == {f"n{i}"}:
                return f"n{i}"
            time.sleep(0.05)
        raise RuntimeError(f"n{i} did not become the leader")

    def status(self, i):
        try:
            with open(os.path.join(self.mnt(i), ".quorumfs", "status")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i, p in self.procs.items():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                subprocess.run(["fusermount3", "-u", "-z", self.mnt(i)],
                               stderr=subprocess.DEVNULL)
                p.kill()
                p.wait()
        for i in self.procs:
            if os.path.ismount(self.mnt(i)):
                subprocess.run(["fusermount3", "-u", "-z", self.mnt(i)],
                               stderr=subprocess.DEVNULL)

    def errors(self):
        out = []
        for i in self.procs:
            with open(os.path.join(self.root, f"log{i}"), errors="replace") as f:
                out += [f"n{i}: {line.rstrip()}" for line in f if " error " in line]
        return out


