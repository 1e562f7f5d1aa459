"""A three-member etcd cluster on loopback for the side-by-side benchmark
(compare.py), and a small client for etcd 3.4's grpc-gateway (HTTP/JSON,
keys and values base64). Member i listens on 127.0.0.i: client port 3237i,
peer port 3238i (quorumfs's `make run` uses 2379i-2381i). Data dirs and logs
are in the caller's directory. Settings are etcd's defaults (fsync on,
heartbeat 100 ms, election 1000 ms, like quorumfs) except a backend quota
large enough for a million keys.

The client keeps one HTTP/1.1 keep-alive connection (http.client, TCP_NODELAY):
use one per thread.
"""
import base64
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time

ETCD = "/usr/bin/etcd"


def _b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _prefix_end(prefix):
    b = bytearray(prefix.encode())
    b[-1] += 1
    return bytes(b)


def version():
    out = subprocess.run([ETCD, "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("etcd Version:") else "?"


class EtcdError(OSError):
    pass


class Client:
    """One keep-alive connection to one member's client port."""

    def __init__(self, addr, timeout=10):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def call(self, path, body):
        try:
            self.conn.request("POST", path, json.dumps(body),
                              {"Content-Type": "application/json"})
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()  # the next call connects again
            raise EtcdError(f"{path}: {e!r}") from e
        out = json.loads(data) if data else {}
        if r.status != 200 or "error" in out:
            raise EtcdError(f"{path}: HTTP {r.status} {out.get('error', data[:200])}")
        return out

    def put(self, key, value):
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key, serializable=False):
        """The value (bytes), or None. Linearizable unless serializable."""
        kvs = self.call("/v3/kv/range", {"key": _b64(key), "serializable": serializable}).get("kvs")
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def put_many(self, pairs):
        """One transaction putting every (key, value): one revision."""
        self.call("/v3/kv/txn", {"success": [
            {"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in pairs]})

    def status(self):
        return self.call("/v3/maintenance/status", {})

    def close(self):
        self.conn.close()


class Watch:
    """A watch on every key under prefix, on its own connection, read by a
    thread as each event arrives: next(timeout) gives (monotonic arrival
    time, key), in order, or None."""

    def __init__(self, addr, prefix):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port))
        self.conn.request("POST", "/v3/watch", json.dumps(
            {"create_request": {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}}),
            {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        if resp.status != 200 or not json.loads(resp.readline())["result"].get("created"):
            raise EtcdError("watch not created")
        self.q = queue.Queue()

        def read():
            try:
                for line in iter(resp.readline, b""):
                    t = time.monotonic()
                    for e in json.loads(line)["result"].get("events", ()):
                        self.q.put((t, base64.b64decode(e["kv"]["key"]).decode()))
            except Exception:  # noqa: BLE001: close() shuts the connection under it
                pass

        threading.Thread(target=read, daemon=True).start()

    def next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        if self.conn.sock:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


class EtcdCluster:
    """Members 1..3; start(), then clients by member number."""

    def __init__(self, root):
        self.root = root
        self.procs = {}
        self.ic = ",".join(f"e{i}=http://127.0.0.{i}:3238{i}" for i in (1, 2, 3))
        for i in (1, 2, 3):
            for port in (3237, 3238):
                s = socket.socket()
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((f"127.0.0.{i}", port * 10 + i))
                except OSError as e:
                    raise RuntimeError(f"127.0.0.{i}:{port * 10 + i} is taken: {e}") from e
                finally:
                    s.close()

    @staticmethod
    def addr(i):
        return f"127.0.0.{i}:3237{i}"

    def log(self, i):
        return os.path.join(self.root, f"etcd{i}.log")

    def start_member(self, i):
        client, peer = f"http://{self.addr(i)}", f"http://127.0.0.{i}:3238{i}"
        with open(self.log(i), "ab") as log:
            self.procs[i] = subprocess.Popen(
                [ETCD, "--name", f"e{i}", "--data-dir", os.path.join(self.root, f"etcd{i}"),
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", self.ic, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "quorumfs-bench",
                 "--quota-backend-bytes", str(8 << 30), "--logger", "zap"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def start(self):
        for i in (1, 2, 3):
            self.start_member(i)
        return self.wait_leader()

    def member_status(self, i):
        c = Client(self.addr(i), timeout=1)
        try:
            return c.status()
        except EtcdError:
            return None
        finally:
            c.close()

    def wait_leader(self, timeout=30):
        """The leader's member number once every running member agrees on one."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for i, p in self.procs.items():
                if p.poll() is not None and p.returncode != -signal.SIGKILL:
                    raise RuntimeError(f"etcd {i} exited {p.returncode}; see {self.log(i)}")
            live = [i for i, p in self.procs.items() if p.poll() is None]
            sts = {i: self.member_status(i) for i in live}
            if all(sts.values()) and len({s["leader"] for s in sts.values()}) == 1:
                leader = next(iter(sts.values()))["leader"]
                for i, s in sts.items():
                    if s["header"]["member_id"] == leader:
                        return i
            time.sleep(0.05)
        raise RuntimeError(f"no etcd leader all members agree on after {timeout} s")

    def make_leader(self, i):
        """Hands leadership to member i (MoveLeader); returns i."""
        leader = self.wait_leader()
        if leader != i:
            target = self.member_status(i)["header"]["member_id"]
            c = Client(self.addr(leader))
            try:
                c.call("/v3/maintenance/transfer-leadership", {"targetID": target})
            finally:
                c.close()
        if self.wait_leader() != i:
            raise RuntimeError(f"etcd {i} did not become the leader")
        return i

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop_member(self, i, timeout=15):
        p = self.procs[i]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i in self.procs:
            self.stop_member(i)
