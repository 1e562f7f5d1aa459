"""The measurements shared by the benchmark scripts, each written once and
given the system under test as plain callables, so quorumfs (through a
mount) and etcd (through its HTTP gateway) run exactly the same loop:

- timed: N sequential calls, one sample each (latency);
- throughput: W threads, each writing its own key for S seconds;
- watch_latency: sequential writes on one member, each timed until its event
  arrives on another member's watcher;
- failover: kill -9 of the leader, time until a write through another
  member is acknowledged.

A write or read that fails raises OSError (etcdcluster.EtcdError is one).
"""
import os
import statistics
import threading
import time


def pct(sorted_vals, p):
    return sorted_vals[min(len(sorted_vals) - 1, max(0, int(round(len(sorted_vals) * p)) - 1))]


def median_p99(samples):
    s = sorted(samples)
    return statistics.median(s), pct(s, 0.99)


def timed(fn, n):
    """fn(i) for i in 0..n-1; the duration of each call, in seconds."""
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def throughput(make_writer, writers, seconds):
    """Writes per second by `writers` threads, each with its own
    make_writer(w) -> write(i) writing its own key, for `seconds`. Each
    thread writes once before the clock starts (creates its key, connects)."""
    counts = [0] * writers
    stop = [0.0]
    ready = threading.Barrier(writers + 1,
                              action=lambda: stop.__setitem__(0, time.monotonic() + seconds))
    errors = []

    def run(w):
        try:
            write = make_writer(w)
            write(0)
        except Exception as e:  # reported below; the barrier must not wait for it
            errors.append(e)
            ready.abort()
            return
        ready.wait()
        n = 1
        while time.monotonic() < stop[0]:
            write(n)
            n += 1
        counts[w] = n - 1

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(writers)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.monotonic() - (stop[0] - seconds))


def watch_latency(write, watcher, n, warmup=20, key=None):
    """write(i) n + warmup times; after each, watcher.next(timeout) gives
    (monotonic arrival time, key) or None; an event for another key than
    `key` (when given) is an error. Returns (samples from the write's return
    to its event, samples from the write's start to its event, missing
    events, extra events)."""
    lat, whole, missing = [], [], 0
    for i in range(warmup + n):
        t0 = time.monotonic()
        write(i)
        t = time.monotonic()
        ev = watcher.next(5.0)
        if ev is None:
            missing += 1
            continue
        if key is not None and ev[1] != key:
            raise RuntimeError(f"unexpected event {ev}")
        if i >= warmup:
            lat.append(ev[0] - t)
            whole.append(ev[0] - t0)
    extra = 0
    while watcher.next(1.0) is not None:
        extra += 1
    return lat, whole, missing, extra


def failover(cluster, make_writer, rounds, pause=1.0):
    """cluster: wait_leader() -> member number, kill(i), start_member(i).
    Each round: kill -9 of the leader, then write through the next member
    (make_writer(member) -> write(i), retried every 10 ms until one is
    acknowledged), the killed member restarted and `pause` s to catch up.
    Returns the seconds from the kill to that acknowledgement, per round."""
    times = []
    for r in range(rounds):
        leader = cluster.wait_leader()
        write = make_writer(leader % 3 + 1)
        retry(write, -1)  # connected (etcd) and the key created (quorumfs) before the kill
        t0 = time.monotonic()
        cluster.kill(leader)
        retry(write, r)
        times.append(time.monotonic() - t0)
        cluster.start_member(leader)
        cluster.wait_leader()
        time.sleep(pause)
    return times


def retry(write, i, timeout=60):
    """write(i) until it is acknowledged, every 10 ms after an OSError."""
    end = time.monotonic() + timeout
    while True:
        try:
            return write(i)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def settle(pids, timeout=120):
    """Waits until the processes together use under 5% of a core over 1 s
    (a member still applying, replaying or snapshotting); the seconds waited."""
    t0 = time.monotonic()
    before = sum(map(cpu_seconds, pids))
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now = sum(map(cpu_seconds, pids))
        if now - before < 0.05:
            break
        before = now
    return time.monotonic() - t0


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid):
    """User + system CPU of pid and its live children (quorumfs's replay
    helper), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / tick
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(c)) for c in f.read().split())
        except OSError:
            pass
    return total
