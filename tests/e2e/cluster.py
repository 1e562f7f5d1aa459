"""A Raft cluster of real `quorumfs serve` members for the end-to-end tests.

Built on qfs.Member and the `members` fixture of conftest.py, which give every
member its own data dir, mount and log under the test's tmp_path, the
watchdog, the teardown (no mount, no process left) and the check that fails a
test when a daemon logged an error it should not have.

Member i (1..5) runs on its own loopback address 127.0.0.i, peer port
base+2i, client port base+2i+1; its outbound peer connections leave from
127.0.0.i too, so a partition is a set of nftables rules on (saddr, daddr)
limited to this cluster's peer ports (so the CLI, which connects from
127.0.0.1, and other clusters on the machine are not affected).

The rules live in table `inet quorumfs_test`, in one chain per cluster
(`c<base>`); teardown deletes that chain, and the table as soon as no other
cluster's chain is in it, even when the test failed.

    def test_x(cluster):
        c = cluster.start()                # n1 n2 n3, waits for a leader
        c.m("n1").sh("echo v > k")
        assert read_file(c.m("n2").p("k")) == b"v\\n"
        c.isolate(c.leader()) ... c.heal()
        c.converge()
"""
import errno
import fcntl
import json
import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from qfs import QUORUMFS, is_mounted, lazy_unmount, read_file, wait_until, write_file

ELECTION_MS = 500
HEARTBEAT_MS = 50
REQUEST_TIMEOUT_MS = 2000
NFT_TABLE = "quorumfs_test"
_NFT_LOCK = "/tmp/quorumfs_test.nft.lock"
MAX_MEMBERS = 5


def _bindable(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_base():
    """A port base whose peer and client ports are free on 127.0.0.1..5.
    Below the ephemeral range (32768+), away from the defaults (2379/2380),
    and different for parallel or leftover runs (random, then checked)."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        base = rng.randrange(20000, 32000, 16)
        if all(_bindable(f"127.0.0.{i}", base + 2 * i + k)
               for i in range(1, MAX_MEMBERS + 1) for k in (0, 1)):
            return base
    raise AssertionError("no free port range found for a cluster")


def start_with_client_port(members, *args, name="n1"):
    """One member (a cluster of one) with --listen-client on 127.0.0.1 at a
    free port; m.ep is that address, for the CLI's --endpoints."""
    ep = f"127.0.0.1:{free_base() + 3}"
    m = members.start(name, "--listen-client", ep, *args)
    m.ep = ep
    return m


KILL9_STUCK_BUG = (
    "a killed daemon did not exit (it once could, blocked on a request to its own "
    "mount; fixed by replaying through a helper process): its FUSE connection was "
    "aborted through /sys/fs/fuse/connections/N/abort so the test could clean up")
FUSECTL = Path("/sys/fs/fuse/connections")


def abort_fuse_connection(minor):
    """Aborts FUSE connection `minor` (mounting fusectl for it if needed, and
    unmounting it again); True if done."""
    mounted_here = False
    if not any(FUSECTL.iterdir()):
        mounted_here = subprocess.run(["mount", "-t", "fusectl", "none", str(FUSECTL)],
                                      capture_output=True).returncode == 0
    try:
        (FUSECTL / str(minor) / "abort").write_text("1")
        return True
    except OSError:
        return False
    finally:
        if mounted_here:
            subprocess.run(["umount", str(FUSECTL)], capture_output=True)


def nft(script, check=True):
    r = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"nft failed ({r.returncode}): {r.stderr}\nscript:\n{script}")
    return r


def _nft_tables():
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return r.stdout


def nft_table_exists():
    return f"table inet {NFT_TABLE}" in _nft_tables()


class _NftLock:
    """Serialises table create/delete between parallel test runs."""

    def __enter__(self):
        self.f = open(_NFT_LOCK, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def tree(root):
    """{relative path: ("d",) | ("l", target) | ("f", bytes)} of a mounted tree,
    without the control directory /.quorumfs."""
    out = {}
    root = Path(root)

    def walk(d, rel):
        for e in sorted(os.scandir(d), key=lambda e: e.name):
            if not rel and e.name == ".quorumfs":
                continue
            r = rel + e.name
            if e.is_symlink():
                out[r] = ("l", os.readlink(e.path))
            elif e.is_dir(follow_symlinks=False):
                out[r] = ("d",)
                walk(e.path, r + "/")
            else:
                out[r] = ("f", read_file(e.path))
    walk(root, "")
    return out


def timed_write(path, data):
    """write_file, and how long it took: (errno or None, seconds)."""
    t = time.monotonic()
    err = write_file(path, data)
    return err, time.monotonic() - t


def timed(fn, *args):  # noqa: E302
    """Runs fn(*args): (errno or None, seconds)."""
    t = time.monotonic()
    try:
        fn(*args)
        err = None
    except OSError as e:
        err = e.errno
    return err, time.monotonic() - t


def timed_parallel(calls):
    """{label: (fn, *args)} run at once, each in its own thread (so several
    operations that must time out cost one timeout): {label: (errno, seconds)}."""
    import threading
    out = {}

    def run(label, fn, *args):
        out[label] = timed(fn, *args)
    ths = [threading.Thread(target=run, args=(label, *call), daemon=True)
           for label, call in calls.items()]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)
    assert len(out) == len(calls), f"stuck: {set(calls) - set(out)}"
    return out


def _write_or_raise(path, data):
    err = write_file(path, data)
    if err is not None:
        raise OSError(err, os.strerror(err), str(path))


class Cluster:
    def __init__(self, members, request_timeout_ms=REQUEST_TIMEOUT_MS,
                 election_ms=ELECTION_MS, heartbeat_ms=HEARTBEAT_MS):
        self.members = members  # conftest.Members: creation, teardown, log check
        self.base = free_base()
        self.chain = f"c{self.base}"
        self.request_timeout_ms = request_timeout_ms
        self.tuning = ["--election-ms", str(election_ms), "--heartbeat-ms", str(heartbeat_ms),
                       "--request-timeout-ms", str(request_timeout_ms)]
        self.ms = {}      # name -> qfs.Member, every member ever started
        self.index = {}   # name -> i (address 127.0.0.i)
        self.nft_active = False
        self.stuck_kills = []  # KILL9_STUCK_BUG occurrences
        self._conn = {}  # name -> fuse connection of its mount when killed

    # -- addresses --

    def addr(self, name):
        return f"127.0.0.{self.index[name]}"

    def peer(self, name):
        return f"{self.addr(name)}:{self.base + 2 * self.index[name]}"

    def client(self, name):
        return f"{self.addr(name)}:{self.base + 2 * self.index[name] + 1}"

    def peer_ports(self):
        return [self.base + 2 * i for i in range(1, MAX_MEMBERS + 1)]

    # -- members --

    def m(self, name):
        return self.ms[name]

    def running(self, name):
        p = self.ms[name].proc
        return p is not None and p.poll() is None

    def live(self):
        return [n for n in self.ms if self.running(n)]

    def _create(self, name, i, args, opts=None, extra=()):
        self.index[name] = i
        args = ["--listen-peer", self.peer(name), "--listen-client", self.client(name),
                *args, *self.tuning, *extra]
        m = self.members.create(name, *args, opts=opts)
        self.ms[name] = m
        return m

    def start(self, n=3, extra=(), opts=None):
        """Starts n1..nN as the initial cluster and waits for every mount and a
        leader. extra: more serve flags for every member, or {name: flags};
        opts: {name: -o OPTS}."""
        opts = opts or {}
        names = [f"n{i}" for i in range(1, n + 1)]
        for i, name in enumerate(names, 1):
            self.index[name] = i
        initial = ",".join(f"{nm}={self.peer(nm)}" for nm in names)
        for i, name in enumerate(names, 1):
            self._create(name, i, ["--initial-cluster", initial], opts.get(name),
                         extra.get(name, ()) if isinstance(extra, dict) else extra)
        for name in names:
            self.ms[name].spawn()
        for name in names:
            self.ms[name].wait_ready()
        self.wait_leader()
        return self

    def join(self, name, i, via=None, opts=None, extra=()):
        """Starts a fresh member on 127.0.0.i that joins as a learner through
        the client port of `via` (default: the first live member)."""
        via = via or self.live()[0]
        m = self._create(name, i, ["--join", self.client(via)], opts, extra)
        m.start(timeout=30)
        return m

    def kill9(self, name, unmount=True, wait=True):
        """SIGKILL; returns time.monotonic() right after the signal was sent.
        wait=False: only the signal; call reap(name) later."""
        m = self.ms[name]
        self._conn[name] = os.minor(os.stat(m.mnt).st_dev) if is_mounted(m.mnt) else None
        m.proc.kill()
        t = time.monotonic()
        if wait:
            self.reap(name, unmount)
        return t

    def reap(self, name, unmount=True):
        """Waits for a killed member to be gone, then (unless told not to)
        lazily unmounts its dead mount. A daemon that does not exit within 5 s
        (KILL9_STUCK_BUG: a thread of its own blocked in a request on its own
        mount) has its FUSE connection aborted so the test can go on; that is
        recorded in self.stuck_kills and printed."""
        m = self.ms[name]
        try:
            m.proc.wait(5)
        except subprocess.TimeoutExpired:
            conn = self._conn.get(name)
            self.stuck_kills.append(f"{name} (pid {m.proc.pid}, fuse connection {conn})")
            print(f"{name}: still not gone 5 s after SIGKILL; aborting fuse connection {conn}")
            assert conn is not None and abort_fuse_connection(conn), \
                f"{name} stuck after SIGKILL and its fuse connection cannot be aborted"
            m.proc.wait(15)
        if unmount:
            lazy_unmount(m.mnt)
            assert wait_until(lambda: not is_mounted(m.mnt), 5), f"{m.mnt} still mounted"

    def restart(self, name, timeout=30):
        self.ms[name].start(timeout=timeout)
        return self.ms[name]

    def stop(self, name):
        self.ms[name].stop()

    def wipe(self, name):
        """Removes the member's data dir (the member must not be running)."""
        assert not self.running(name)
        shutil.rmtree(self.ms[name].data_dir, ignore_errors=True)

    def shutdown(self):
        """SIGTERM to every running member; returns the problems seen (a
        member that did not exit within 10 s has its fuse connection aborted
        and is killed, so that nothing is left behind either way)."""
        problems = []
        conns = {}
        for n in self.live():
            m = self.ms[n]
            conns[n] = os.minor(os.stat(m.mnt).st_dev) if is_mounted(m.mnt) else None
            m.proc.terminate()
        for n in conns:
            m = self.ms[n]
            try:
                rc = m.proc.wait(10)
                if rc != 0:
                    problems.append(f"{n} exited {rc} on SIGTERM")
            except subprocess.TimeoutExpired:
                problems.append(f"{n} (pid {m.proc.pid}) did not exit within 10 s of SIGTERM")
                if conns[n] is not None:
                    abort_fuse_connection(conns[n])
                m.proc.kill()
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    problems.append(f"{n} (pid {m.proc.pid}) survives SIGKILL")
        return problems

    # -- state --

    def status(self, name):
        """The member's /.quorumfs/status, or None when it cannot be read."""
        try:
            return json.loads(read_file(self.ms[name].p(".quorumfs/status")))
        except (OSError, ValueError):
            return None

    def role(self, name):
        st = self.status(name)
        return st and st["role"]

    def leader(self, among=None):
        """The leader every member of `among` (default: live members) agrees
        on and that says it is leader, or None."""
        among = among or self.live()
        sts = [self.status(n) for n in among]
        if any(s is None for s in sts):
            return None
        leaders = {s["leader"] for s in sts}
        if len(leaders) != 1:
            return None
        (ld,) = leaders
        if not ld or ld not in self.ms:
            return None
        if ld in among:
            if self.status(ld)["role"] != "leader":
                return None
        return ld

    def wait_leader(self, among=None, timeout=10, not_=None):
        def pick():
            ld = self.leader(among)
            return ld if ld and ld != not_ else None
        ld = wait_until(pick, timeout)
        if not ld:
            raise AssertionError(f"no leader among {among or self.live()} after {timeout} s: "
                                 + "; ".join(f"{n}: {self.status(n)}"
                                             for n in (among or self.live())))
        return ld

    def followers(self, among=None):
        ld = self.leader(among)
        return [n for n in (among or self.live()) if n != ld]

    def converge(self, among=None, timeout=15):
        """Waits until every member of `among` (default: live members) reports
        the same applied index and revision; returns the revision."""
        among = among or self.live()

        def same():
            sts = [self.status(n) for n in among]
            if any(s is None for s in sts):
                return None
            if len({(s["applied_index"], s["revision"]) for s in sts}) == 1 \
                    and all(s["commit_index"] == s["applied_index"] for s in sts):
                return (sts[0]["revision"],)
            return None
        r = wait_until(same, timeout)
        if not r:
            raise AssertionError(f"members did not converge in {timeout} s: "
                                 + "; ".join(f"{n}: {self.status(n)}" for n in among))
        return r[0]

    def assert_same(self, among=None):
        """converge(), then the same tree and revision on every member; returns the tree."""
        among = among or self.live()
        rev = self.converge(among)
        trees = {n: tree(self.ms[n].mnt) for n in among}
        first = among[0]
        for n in among[1:]:
            if trees[n] != trees[first]:
                a, b = trees[first], trees[n]
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                raise AssertionError(f"{n} differs from {first} at {diff[:10]}")
        for n in among:
            assert self.status(n)["revision"] == rev, (n, self.status(n))
        return trees[first]

    # -- CLI --

    def endpoints(self, names=None):
        return ",".join(self.client(n) for n in (names or self.live()))

    def cli(self, *args, endpoints=None, check=True, timeout=30):
        """bin/quorumfs ARGS --endpoints ...; returns the CompletedProcess."""
        eps = endpoints if isinstance(endpoints, str) else self.endpoints(endpoints)
        cmd = [str(QUORUMFS), *map(str, args), "--endpoints", eps]
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\nstdout: {r.stdout}\n"
                                 f"stderr: {r.stderr}")
        return r

    def cli_json(self, *args, endpoints=None):
        return json.loads(self.cli(*args, "-w", "json", endpoints=endpoints).stdout)

    def member_list(self, via=None):
        """{name: role} from `member list -w json` through `via`."""
        return {m["name"]: m["role"] for m in self.cli_json("member", "list",
                                                            endpoints=via and [via])}

    # -- partitions --

    def partition(self, *groups):
        """Cuts peer traffic between every two groups of member names (members
        not named keep talking to everyone). Replaces any earlier partition."""
        ports = ", ".join(map(str, self.peer_ports()))
        rules = []
        for g in groups:
            for h in groups:
                if g is h:
                    continue
                for a in g:
                    for b in h:
                        for d in ("dport", "sport"):
                            rules.append(f"ip saddr {self.addr(a)} ip daddr {self.addr(b)} "
                                         f"tcp {d} {{ {ports} }} drop")
        with _NftLock():
            nft(f"add table inet {NFT_TABLE}\n"
                f"add chain inet {NFT_TABLE} {self.chain} "
                f"{{ type filter hook output priority 0; policy accept; }}\n"
                f"flush chain inet {NFT_TABLE} {self.chain}\n"
                + "".join(f"add rule inet {NFT_TABLE} {self.chain} {r}\n" for r in rules))
            self.nft_active = True

    def isolate(self, name):
        self.partition([name], [n for n in self.ms if n != name])

    def heal(self):
        with _NftLock():
            if self.nft_active:
                nft(f"flush chain inet {NFT_TABLE} {self.chain}", check=False)

    def teardown_nft(self):
        """Deletes this cluster's chain, and the table when no other chain is left."""
        with _NftLock():
            if not nft_table_exists():
                return
            nft(f"delete chain inet {NFT_TABLE} {self.chain}", check=False)
            r = subprocess.run(["nft", "list", "table", "inet", NFT_TABLE],
                               capture_output=True, text=True)
            if "chain " not in r.stdout:
                nft(f"delete table inet {NFT_TABLE}", check=False)


@pytest.fixture
def cluster(members):
    """A Cluster not started yet: call cluster.start(...). Teardown removes its
    nftables rules first, then the `members` fixture stops every member and
    checks their logs."""
    c = Cluster(members)
    yield c
    c.teardown_nft()
    problems = c.shutdown()
    if c.nft_active and nft_table_exists():
        r = subprocess.run(["nft", "list", "table", "inet", NFT_TABLE],
                           capture_output=True, text=True)
        assert f"chain {c.chain} " not in r.stdout, "nftables chain left behind"
    if c.stuck_kills:
        print(f"{KILL9_STUCK_BUG}: {c.stuck_kills}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


ETIMEDOUT = errno.ETIMEDOUT
write_or_raise = _write_or_raise
