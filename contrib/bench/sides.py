"""quorumfs and etcd behind one small interface, for compare.py: a
three-member cluster each (benchcluster.py, etcdcluster.py), member 2 made
the leader, and per member: writer(i) -> write(key, value), reader(i,
cached) -> read(key) -> bytes, watch(i, dir) -> next(timeout) -> (time,
key), kill / stop_member / start_member, pid, and load(keys) for the
restart row. quorumfs's clients are system calls on the member's mount
(member 3 mounted -o consistency=serializable, for the cached reads); etcd's
are etcdcluster.Client, one keep-alive HTTP/JSON connection each.
"""
import os
import threading
import time

from benchcluster import Cluster, MountWatch, read_file, write_file
from etcdcluster import Client, EtcdCluster, EtcdError, Watch


def value_of(k):
    return f"value {k:025d}\n"  # 32 bytes


def load_key(k):
    return f"/bench/load/d{k // 1000:04d}/k{k:07d}"


def run_threads(n, fn):
    """fn(t) on n daemon threads (so Ctrl-C is not held up); the first error."""
    errors = []

    def run(t):
        try:
            fn(t)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Retried:
    """Calls fn(*args) again while it raises `error` (up to 10 times in a
    row), counting the retries, from any thread."""

    def __init__(self, error):
        self.error = error
        self.count = 0
        self.mu = threading.Lock()

    def __call__(self, fn, *args, **kwargs):
        for attempt in range(10):
            try:
                return fn(*args, **kwargs)
            except self.error:
                if attempt == 9:
                    raise
                with self.mu:
                    self.count += 1
                time.sleep(0.1)


class Side:
    """What both sides do alike: self.c is their three-member cluster, member
    2 leads at the start."""

    def start(self):
        self.c.start()
        self.c.make_leader(2)

    def kill(self, i):
        self.c.kill(i)

    def start_member(self, i):
        self.c.start_member(i)

    def stop_member(self, i):
        self.c.stop_member(i)

    def pid(self, i):
        return self.c.procs[i].pid


class Quorumfs(Side):
    name = "quorumfs"

    def __init__(self, root):
        self.c = Cluster(root, member_extra={3: ["-o", "consistency=serializable"]})

    def wait_leader(self):
        return int(self.c.wait_leader()[1:])

    def mkdir(self, d):
        """d on every member before the first write in it."""
        os.makedirs(self.c.mnt(1) + d, exist_ok=True)
        for i in (2, 3):
            end = time.monotonic() + 10
            while not os.path.isdir(self.c.mnt(i) + d):
                if time.monotonic() > end:
                    raise RuntimeError(f"{d} did not appear on n{i}")
                time.sleep(0.01)

    def writer(self, i, timeout=None):
        """timeout: ignored (close() returns or fails by itself, ETIMEDOUT
        after --request-timeout-ms)."""
        mnt = self.c.mnt(i)

        def write(key, value):
            try:
                write_file(mnt + key, value)
            except FileNotFoundError:
                if not os.path.ismount(mnt):  # the path now leads into the empty directory
                    raise RuntimeError(f"{mnt} was unmounted under the benchmark (by another "
                                       "process on this machine?)") from None
                raise
        return write

    def reader(self, i, cached):
        assert cached == (i == 3), "only member 3 is mounted serializable"
        mnt = self.c.mnt(i)
        return lambda key: read_file(mnt + key)

    def watch(self, i, d):
        return MountWatch(self.c.mnt(i), d)

    def load(self, keys):
        """Threads writing through all three mounts, each its own
        directories of 1000 keys: creates in one directory are serialised by
        the kernel's lock on it. A write that fails with ETIMEDOUT (nothing
        committed within --request-timeout-ms) is retried; returns how many
        were."""
        threads = 48
        ndirs = (keys + 999) // 1000
        retried = Retried(TimeoutError)
        self.mkdir("/bench/load")

        def run(t):
            write = self.writer(t % 3 + 1)
            for d in range(t, ndirs, threads):
                retried(os.makedirs, self.c.mnt(t % 3 + 1) + load_key(d * 1000).rsplit("/", 1)[0],
                        exist_ok=True)
                for k in range(d * 1000, min(keys, d * 1000 + 1000)):
                    retried(write, load_key(k), value_of(k))
        run_threads(threads, run)
        return retried.count


class Etcd(Side):
    name = "etcd"

    def __init__(self, root):
        self.c = EtcdCluster(root)

    def wait_leader(self):
        return self.c.wait_leader()

    def mkdir(self, d):
        pass

    def writer(self, i, timeout=10):
        return Client(self.c.addr(i), timeout).put

    def reader(self, i, cached):
        client = Client(self.c.addr(i))
        return lambda key: client.get(key, serializable=cached)

    def watch(self, i, prefix):
        return Watch(self.c.addr(i), prefix + "/")

    def load(self, keys):
        """Transactions of 128 puts (etcd's --max-txn-ops default), two
        connections per member; one that fails is retried (the same puts
        again); returns how many were."""
        threads, batch = 6, 128
        retried = Retried(EtcdError)

        def run(t):
            c = Client(self.c.addr(t % 3 + 1), timeout=60)
            for b in range(t * batch, keys, threads * batch):
                retried(c.put_many,
                        [(load_key(k), value_of(k)) for k in range(b, min(keys, b + batch))])
            c.close()
        run_threads(threads, run)
        return retried.count
