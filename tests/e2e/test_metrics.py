"""Metrics and health (SPEC §3.7, §7): /.quorumfs/metrics in the mount, and
/metrics, /health, /readyz over HTTP on --metrics-listen. The numbers must
move with what the member does: writes count as committed proposals, each
group commit is one fsync observation, watchers and leases show up."""
import socket
import subprocess
import time

import pytest

from cluster import cluster  # noqa: F401  (fixture)
from qfs import QUORUMFS, read_file, wait_until


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(text):
    """Prometheus text -> {series: value}; checks every sample has a TYPE."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{")[0]
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in typed:
                base = name[:-len(suffix)]
        assert base in typed, f"sample without a # TYPE line: {line!r}"
        assert series not in out, f"duplicate series {series}"
        out[series] = float(value)
    return out


def http(port, request, timeout=5):
    """Raw request bytes -> (status, headers text, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode(), body


def get(port, path):
    return http(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def test_metrics_file_moves_with_writes(member):
    m = member
    before = parse(read_file(m.p(".quorumfs/metrics")).decode())
    for series in ("quorumfs_server_is_leader", "quorumfs_server_has_leader",
                   "quorumfs_mvcc_revision", "quorumfs_mvcc_db_total_size_in_bytes",
                   "quorumfs_lease_active", "quorumfs_watchers",
                   'quorumfs_cluster_members{kind="voter"}',
                   'quorumfs_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}'):
        assert series in before, series
    assert before["quorumfs_server_is_leader"] == 1
    for i in range(20):
        m.sh(f"echo {i} > k{i}")
    m.sh("setfattr -n user.quorumfs.ttl -v 30 k0")
    after = parse(read_file(m.p(".quorumfs/metrics")).decode())
    assert after["quorumfs_server_proposals_committed_total"] >= \
        before["quorumfs_server_proposals_committed_total"] + 21
    assert after["quorumfs_mvcc_revision"] >= before["quorumfs_mvcc_revision"] + 21
    assert after["quorumfs_mvcc_keys_total"] >= 20
    assert after["quorumfs_lease_active"] == 1
    fsyncs = after["quorumfs_disk_wal_fsync_duration_seconds_count"]
    assert fsyncs > before["quorumfs_disk_wal_fsync_duration_seconds_count"]
    assert after['quorumfs_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}'] == fsyncs
    assert after["quorumfs_server_apply_duration_seconds_count"] >= 21
    assert after["quorumfs_server_proposal_duration_seconds_count"] >= 21
    assert after["quorumfs_server_proposals_failed_total"] == 0
    # buckets are cumulative
    le = [(float(k.split('"')[1]), v) for k, v in after.items()
          if k.startswith("quorumfs_disk_wal_fsync_duration_seconds_bucket") and "+Inf" not in k]
    counts = [v for _, v in sorted(le)]
    assert counts == sorted(counts)


def test_http_endpoints(members):
    port = free_port()
    endpoint = f"127.0.0.1:{free_port()}"
    m = members.start("n1", "--metrics-listen", f"127.0.0.1:{port}", "--listen-client", endpoint)
    m.sh("echo v > k")
    status, head, body = get(port, "/metrics")
    assert status == 200 and "text/plain; version=0.0.4" in head
    assert f"Content-Length: {len(body)}" in head
    page = parse(body.decode())
    assert page["quorumfs_server_proposals_committed_total"] >= 1
    assert get(port, "/health")[0:3:2] == (200, b'{"health":"true"}\n')
    assert get(port, "/readyz")[0:3:2] == (200, b"ok\n")
    assert get(port, "/metrics?name[]=x")[0] == 200
    status, _, body = http(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert status == 200 and body == b""
    assert get(port, "/nope")[0] == 404
    assert http(port, b"POST /metrics HTTP/1.1\r\n\r\n")[0] == 405
    assert http(port, b"garbage\r\n\r\n")[0] == 400
    assert http(port, b"GET /" + b"a" * 9000)[0] == 431
    # A client that never finishes its request does not block the others,
    # and is answered 408 after the deadline.
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    assert get(port, "/health")[0] == 200
    slow.settimeout(10)
    assert slow.recv(100).startswith(b"HTTP/1.1 408 ")
    slow.close()
    # A watcher shows up in the gauge while it runs.
    watchers = lambda: parse(get(port, "/metrics")[2].decode())["quorumfs_watchers"]  # noqa: E731
    assert watchers() == 0
    w = subprocess.Popen([str(QUORUMFS), "watch", "/", "--prefix", "--endpoints", endpoint],
                         stdout=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: watchers() == 1, 5)
    finally:
        w.kill()
        w.wait()
    assert wait_until(lambda: watchers() == 0, 5)


@pytest.mark.expect_errors
def test_bad_metrics_listen_is_refused(members):
    m = members.create("n1", "--metrics-listen", "nonsense")
    m.spawn()
    assert m.proc.wait(10) != 0
    assert "--metrics-listen nonsense" in m.log_text()


@pytest.mark.expect_errors
def test_health_without_quorum(cluster):
    """Health follows the leader: with two of three members gone, the third
    answers 503 with the reason, on HTTP and in its metrics."""
    ports = {n: free_port() for n in ("n1", "n2", "n3")}
    c = cluster.start(extra={n: ["--metrics-listen", f"127.0.0.1:{p}"] for n, p in ports.items()})
    c.m("n1").sh("echo v > k")
    for n, p in ports.items():
        assert wait_until(lambda p=p: get(p, "/health")[0] == 200, 5), n
    leader = c.leader()
    others = [n for n in ports if n != leader]
    # The leader times its heartbeats to each peer.
    page = {}

    def measured():
        page.update(parse(get(ports[leader], "/metrics")[2].decode()))
        return all(page['quorumfs_network_peer_last_round_trip_seconds{peer="%s"}' % n] > 0
                   for n in others)
    assert wait_until(measured, 5), page
    assert page["quorumfs_network_peer_round_trip_time_seconds_count"] > 0
    assert all(page['quorumfs_network_peer_connected{peer="%s"}' % n] == 1 for n in others)
    c.kill9(others[0])
    c.kill9(leader)
    last = others[1]
    assert wait_until(lambda: get(ports[last], "/health")[0] == 503, 10)
    status, _, body = get(ports[last], "/health")
    assert body == b'{"health":"false","reason":"no leader"}\n'
    assert get(ports[last], "/readyz") == (503, get(ports[last], "/readyz")[1],
                                           b"not ready: no leader\n")
    page = parse(get(ports[last], "/metrics")[2].decode())
    assert page["quorumfs_server_has_leader"] == 0
    assert page["quorumfs_server_leader_changes_seen_total"] >= 1
    assert page['quorumfs_network_peer_connected{peer="%s"}' % leader] == 0
