"""A three-member quorumfs cluster on loopback for the benchmarks: n1..n3 on
127.0.0.1-3 (each on its own address), one mount each, free ports picked at
random, every member's log in the cluster's directory; how the benchmarks
write and read a file (one open/write/close is one committed revision); and
InotifyWait / MountWatch, watchers of a mounted directory. Used by
compare.py, watch_latency.py, lease_accuracy.py, latency.py and throughput.py.
"""
import json
import os
import queue
import signal
import subprocess
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QFS = os.path.join(REPO, "bin", "quorumfs")


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


def write_file(path, data):
    """open/write/close: close() returns once the value is committed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def read_file(path):
    """open/read/close of a small value."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


class Cluster:
    """n1..n3 on 127.0.0.1-3; peer port base+i, client port base+100+i.
    extra: serve flags for every member; member_extra: {i: flags} for one."""

    def __init__(self, root, extra=(), member_extra=None):
        self.root = root
        self.extra = list(extra)
        self.member_extra = member_extra or {}
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

    def log(self, i):
        return os.path.join(self.root, f"log{i}")

    def start_member(self, i):
        os.makedirs(self.mnt(i), exist_ok=True)
        with open(self.log(i), "ab") as log:
            self.procs[i] = subprocess.Popen(
                [QFS, "serve", "--name", f"n{i}", "--data-dir",
                 os.path.join(self.root, f"d{i}"), "--mount", self.mnt(i),
                 "--listen-peer", f"127.0.0.{i}:{self.base + i}",
                 "--listen-client", f"127.0.0.{i}:{self.base + 100 + i}",
                 "--initial-cluster", self.ic, *self.extra, *self.member_extra.get(i, ())],
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
                    raise RuntimeError(f"n{i} exited {p.returncode}; see {self.log(i)}")
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

    def stop_member(self, i):
        """SIGTERM (a clean stop, the mount goes with it); kill -9 after 15 s."""
        p = self.procs[i]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-u", "-z", self.mnt(i)], stderr=subprocess.DEVNULL)
            p.kill()
            p.wait()
        if os.path.ismount(self.mnt(i)):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt(i)], stderr=subprocess.DEVNULL)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i in self.procs:
            self.stop_member(i)

    def errors(self):
        out = []
        for i in self.procs:
            with open(self.log(i), errors="replace") as f:
                out += [f"n{i}: {line.rstrip()}" for line in f if " error " in line]
        return out




class InotifyWait:
    """`inotifywait -m` on a directory: (monotonic arrival time, event, path)
    in a queue, read by a thread as each line arrives."""

    def __init__(self, path, events, recursive=False):
        cmd = ["stdbuf", "-oL", "inotifywait", "-m", "--format", "%e %w%f"]
        if recursive:
            cmd.append("-r")
        for e in events:
            cmd += ["-e", e]
        self.proc = subprocess.Popen(cmd + [path], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        self.q = queue.Queue()
        ready = threading.Event()

        def err():
            for line in self.proc.stderr:
                if "Watches established" in line:
                    ready.set()
            ready.set()

        def out():
            for line in self.proc.stdout:
                t = time.monotonic()
                ev, _, p = line.rstrip("\n").partition(" ")
                self.q.put((t, ev, p))

        for fn in (err, out):
            threading.Thread(target=fn, daemon=True).start()
        if not ready.wait(10) or self.proc.poll() is not None:
            self.close()
            raise RuntimeError("inotifywait did not start")

    def next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class MountWatch:
    """CLOSE_WRITE events in directory d of a mount, as (arrival time, key)."""

    def __init__(self, mnt, d):
        self.mnt = mnt
        self.w = InotifyWait(mnt + d, ["close_write"])

    def next(self, timeout):
        ev = self.w.next(timeout)
        return ev and (ev[0], ev[2][len(self.mnt):])

    def close(self):
        self.w.close()
