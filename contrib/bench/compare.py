#!/usr/bin/python3
"""`make bench` (SPEC §8): the same workloads against a three-member quorumfs
cluster and a three-member etcd 3.4 cluster (sides.py), both on loopback
with fsync on, heartbeat 100 ms and election timeout 1 s, member 2 leading
at the start; one table at the end: quorumfs, etcd, quorumfs/etcd.

Clients are Python on both sides, one per thread, so the per-request cost
differs: quorumfs through its FUSE mounts (open/write/close, where close
returns once committed; open/read/close), etcd through one keep-alive
HTTP/JSON connection to its grpc-gateway (/v3/kv/put, /v3/kv/range,
/v3/watch). The loops are workloads.py's, the same for both.

- write latency: N sequential writes of one key through member 1 (a
  follower), then member 2 (the leader); median and p99.
- write throughput: 64 threads through member 1, each writing its own key
  for S seconds; the CPU used by the client and the members is printed.
- read latency: N sequential reads of one key; linearizable through member 1
  (quorumfs: open takes a ReadIndex read point; etcd: a default range),
  cached through member 3 (quorumfs: a mount with -o
  consistency=serializable, the value in the page cache; etcd: a
  serializable range).
- watch latency: N writes on member 1, each timed from the start of the
  write to its event on member 3 (quorumfs: CLOSE_WRITE from inotifywait on
  its mount; etcd: a /v3/watch stream); from the write's return is printed
  too.
- failover: kill -9 of the leader -> the next write acknowledged through
  another member, retried every 10 ms; etcd's puts there give up after 100
  ms (docs/design.md, Benchmarks). Median and max of ROUNDS.
- restart: KEYS keys (32-byte values) loaded (quorumfs: threads writing
  files through all three mounts; etcd: transactions of 128 puts; a write
  that times out is retried and counted), then
  member 1 stopped (SIGTERM) and started again: time until a linearizable
  read of the last key through it returns the value. Memory per key: the
  largest member RSS once the members are idle after the load, / KEYS.

Everything (members, mounts, watchers, the temporary directory) is cleaned
up on exit, also on an error, Ctrl-C or SIGTERM.

usage: compare.py [--quick] [--keys N] [--keep]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchcluster import _sigterm  # noqa: E402
from etcdcluster import version as etcd_version  # noqa: E402
from sides import Etcd, Quorumfs, load_key, value_of  # noqa: E402
import workloads as wl  # noqa: E402


class Table:
    def __init__(self):
        self.rows = []

    def add(self, label, unit, better, q, e, fmt="{:.2f}"):
        self.rows.append((label, unit, better, q, e, fmt))
        print(f"  {label}: quorumfs {fmt.format(q)} {unit}, etcd {fmt.format(e)} {unit}", flush=True)

    def print(self):
        print(f"\n{'':56} {'quorumfs':>9} {'etcd':>9} {'q/etcd':>7}  better")
        for label, unit, better, q, e, fmt in self.rows:
            ratio = f"{q / e:.2f}" if e else "-"
            print(f"{label + ' (' + unit + ')':56} {fmt.format(q):>9} {fmt.format(e):>9} "
                  f"{ratio:>7}  {better}")


def restart_time(s, i, key, value):
    """Stops member i (SIGTERM), starts it: seconds until a linearizable read
    of key through it returns value."""
    s.stop_member(i)
    read = s.reader(i, False)
    t0 = time.monotonic()
    s.start_member(i)
    while True:
        try:
            if read(key) == value.encode():
                return time.monotonic() - t0
        except OSError:
            pass
        if s.c.procs[i].poll() is not None:
            raise RuntimeError(f"{s.name} member {i} exited {s.c.procs[i].returncode}")
        time.sleep(0.01)


def both(sides, fn):
    return [fn(s) for s in sides]


def run(sides, a, table):
    ms = 1000.0
    for s in sides:
        s.mkdir("/bench/lat")
    for member, role in ((1, "follower"), (2, "leader")):
        r = both(sides, lambda s: wl.median_p99(wl.timed(
            lambda i, w=s.writer(member): w("/bench/lat/key", f"value {i}\n"), a.n)))
        table.add(f"write latency via {role}, median", "ms", "lower", r[0][0] * ms, r[1][0] * ms)
        table.add(f"write latency via {role}, p99", "ms", "lower", r[0][1] * ms, r[1][1] * ms)

    def tp(s):
        s.mkdir("/bench/tp")

        def make_writer(w):
            write = s.writer(1)
            return lambda i: write(f"/bench/tp/w{w}", f"{i}\n")
        pids = [s.pid(i) for i in (1, 2, 3)]
        c0, m0, t0 = os.times(), sum(map(wl.cpu_seconds, pids)), time.monotonic()
        r = wl.throughput(make_writer, 64, a.seconds)
        c1, m1, t1 = os.times(), sum(map(wl.cpu_seconds, pids)), time.monotonic()
        print(f"  {s.name}: CPU while writing: client {c1.user + c1.system - c0.user - c0.system:.1f} s, "
              f"members {m1 - m0:.1f} s, in {t1 - t0:.1f} s on {os.cpu_count()} cores")
        return r
    r = both(sides, tp)
    table.add("write throughput, 64 writers via follower", "writes/s", "higher", *r, "{:.0f}")

    for member, cached, label in ((1, False, "linearizable read via follower"),
                                  (3, True, "cached/serializable read via follower")):
        def rd(s):
            s.writer(1)("/bench/lat/key", "read me\n")
            read = s.reader(member, cached)
            end = time.monotonic() + 10
            while read("/bench/lat/key") != b"read me\n":  # member 3 may lag
                if time.monotonic() > end:
                    raise RuntimeError(f"{s.name}: member {member} does not see the write")
                time.sleep(0.01)
            return wl.median_p99(wl.timed(lambda i: read("/bench/lat/key"), a.n))
        r = both(sides, rd)
        table.add(f"{label}, median", "ms", "lower", r[0][0] * ms, r[1][0] * ms, "{:.3f}")
        table.add(f"{label}, p99", "ms", "lower", r[0][1] * ms, r[1][1] * ms, "{:.3f}")

    def watch(s):
        s.mkdir("/bench/watch")
        w = s.watch(3, "/bench/watch")
        try:
            write = s.writer(1)
            lat, whole, missing, extra = wl.watch_latency(
                lambda i: write("/bench/watch/key", f"{i}\n"), w, a.watch, key="/bench/watch/key")
        finally:
            w.close()
        if missing or extra:
            print(f"  {s.name}: watch events missing {missing}, extra {extra}")
        return (*wl.median_p99(whole), wl.median_p99(lat)[0])
    r = both(sides, watch)
    table.add("watch: write starts on n1 -> event on n3, median", "ms", "lower",
              r[0][0] * ms, r[1][0] * ms, "{:.3f}")
    table.add("watch: write starts on n1 -> event on n3, p99", "ms", "lower",
              r[0][1] * ms, r[1][1] * ms, "{:.3f}")
    print("  watch: write returned on n1 -> event on n3, median: " + ", ".join(
        f"{s.name} {x[2] * ms:.3f} ms" for s, x in zip(sides, r)) + " (negative: the event came first)")

    def failover(s):
        s.mkdir("/bench/failover")

        def make_writer(member):
            write = s.writer(member, timeout=0.1)
            return lambda i: write("/bench/failover/key", f"round {i}\n")
        t = sorted(wl.failover(s, make_writer, a.rounds))
        print(f"  {s.name} failover ms: " + " ".join(f"{x * ms:.0f}" for x in t))
        return wl.median_p99(t)[0], t[-1]
    r = both(sides, failover)
    table.add(f"failover kill -9 leader -> write, median of {a.rounds}", "ms", "lower",
              r[0][0] * ms, r[1][0] * ms, "{:.0f}")
    table.add(f"failover kill -9 leader -> write, max of {a.rounds}", "ms", "lower",
              r[0][1] * ms, r[1][1] * ms, "{:.0f}")

    def restart(s):
        t0 = time.monotonic()
        retried = s.load(a.keys)
        loaded = time.monotonic() - t0
        last = load_key(a.keys - 1)
        for i in (1, 2, 3):
            read = s.reader(i, i == 3)
            end = time.monotonic() + 120
            while True:
                try:
                    if read(last) == value_of(a.keys - 1).encode():
                        break
                except OSError:
                    pass
                if time.monotonic() > end:
                    raise RuntimeError(f"{s.name}: member {i} did not get the last key")
                time.sleep(0.05)
        idle = wl.settle([s.pid(i) for i in (1, 2, 3)])
        rss = [wl.rss_bytes(s.pid(i)) for i in (1, 2, 3)]
        print(f"  {s.name}: {a.keys} keys loaded in {loaded:.1f} s ({a.keys / loaded:.0f} keys/s; "
              f"{retried} writes timed out and were retried), members idle {idle:.0f} s later; RSS "
              + ", ".join(f"{x / 2**20:.0f} MiB" for x in rss), flush=True)
        return restart_time(s, 1, last, value_of(a.keys - 1)), max(rss) / a.keys
    r = both(sides, restart)
    table.add(f"restart with {a.keys} keys until it serves", "s", "lower", r[0][0], r[1][0])
    table.add("memory per key (largest member RSS / keys)", "bytes", "lower",
              r[0][1], r[1][1], "{:.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer samples and 10000 keys (under a minute)")
    ap.add_argument("--keys", type=int, help="keys loaded for the restart (default 1000000)")
    ap.add_argument("--keep", action="store_true", help="keep the logs and data directories")
    a = ap.parse_args()
    a.n, a.seconds, a.watch, a.rounds = (200, 2, 100, 3) if a.quick else (1000, 5, 500, 10)
    a.keys = a.keys or (10000 if a.quick else 1000000)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with it ignored
    root = tempfile.mkdtemp(prefix="quorumfs-compare.")
    os.mkdir(os.path.join(root, "quorumfs"))
    os.mkdir(os.path.join(root, "etcd"))
    t0 = time.monotonic()
    load0 = os.getloadavg()
    sides = []
    try:
        sides.append(Quorumfs(os.path.join(root, "quorumfs")))
        sides.append(Etcd(os.path.join(root, "etcd")))
        for s in sides:
            s.start()
        print("quorumfs: 3 members, Python open/write/close and open/read/close through FUSE "
              "mounts (n3 -o consistency=serializable)\n"
              f"etcd {etcd_version()}: 3 members, Python http.client keep-alive HTTP/JSON "
              "to the grpc-gateway (one connection per thread)\n"
              f"both: loopback, fsync on, member 2 leads at the start; load average "
              f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} cores", flush=True)
        table = Table()
        run(sides, a, table)
        table.print()
        load1 = os.getloadavg()
        print("\nq/etcd: quorumfs / etcd. etcd's serializable read is roughly what its Python "
              "HTTP/JSON client and\ngateway cost per request. After kill -9, quorumfs followers "
              "elect as soon as the leader's\nconnection resets; etcd waits for its election "
              "timeout (docs/design.md, Benchmarks).\n"
              f"{time.monotonic() - t0:.0f} s; load average at the end {load1[0]:.2f} "
              f"{load1[1]:.2f} {load1[2]:.2f} (other work on this machine makes every number noisy)")
    except Exception:
        for s in sides:  # the logs go with the temporary directory: their tails first
            for i in s.c.procs:
                print(f"== {s.name} member {i}, last lines of its log:")
                subprocess.run(["tail", "-n", "8", s.c.log(i)])
        raise
    finally:
        if sides:
            errs = sides[0].c.errors()
            if errs:
                print("quorumfs errors logged:\n  " + "\n  ".join(errs[:10]))
        for s in sides:
            s.c.stop()
        if a.keep:
            print(f"logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
