#!/usr/bin/python3
"""Cross-node watch latency (SPEC §3.6, §8): a three-member quorumfs cluster on
loopback (members on 127.0.0.1-3, one mount each), `inotifywait -m` on n3,
N sequential writes (open/write/close) of one key through n1's mount; for
each, the time from close() returning on n1 (and from open() being called)
to inotifywait printing the CLOSE_WRITE on n3. By default n2 is made the
leader (`quorumfs leader transfer`), so writer and watcher are followers.
Prints the median, p99 and max over N, and how many events were missing or
duplicated (each write must give exactly one).

The watcher helper here is also used by lease_accuracy.py.
Everything (daemons, mounts, inotifywait, the temporary directory) is
cleaned up on exit, also on an error, Ctrl-C or SIGTERM.

usage: watch_latency.py [N] [--leader 1|2|3] [--election-ms MS] [--heartbeat-ms MS] [--keep]
"""
import argparse
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchcluster import Cluster, _sigterm  # noqa: E402


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


def pct(sorted_vals, p):
    return sorted_vals[min(len(sorted_vals) - 1, max(0, int(round(len(sorted_vals) * p)) - 1))]


def run(c, n):
    d1, d3 = os.path.join(c.mnt(1), "watch-latency"), os.path.join(c.mnt(3), "watch-latency")
    os.mkdir(d1)
    end = time.monotonic() + 5
    while not os.path.isdir(d3):
        if time.monotonic() > end:
            raise RuntimeError("the directory did not appear on n3")
        time.sleep(0.01)
    w = InotifyWait(d3, ["close_write"])
    try:
        key = os.path.join(d1, "key")
        lat, whole, missing = [], [], 0
        warmup = 20
        for i in range(warmup + n):
            t0 = time.monotonic()
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, f"value {i}\n".encode())
            os.close(fd)
            t = time.monotonic()
            ev = w.next(5.0)
            if ev is None:
                missing += 1
                continue
            if not ev[2].endswith("/key"):
                raise RuntimeError(f"unexpected event {ev}")
            if i >= warmup:
                lat.append(ev[0] - t)
                whole.append(ev[0] - t0)
        time.sleep(1.0)
        extra = w.q.qsize()
    finally:
        w.close()
    return lat, whole, missing, extra


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
            print(f"{label}: median {statistics.median(ms):.3f} ms, p99 {pct(ms, 0.99):.3f} ms, "
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
