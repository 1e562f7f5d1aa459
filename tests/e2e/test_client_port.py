"""The client port's deadlines (fs/client_port.c): a connection that sends
no request header within 10 s of connecting (a silent one, one stuck in its
TLS handshake, half a header) is closed and its slot freed; one that has
been answered may wait between requests (5 minutes; shortened here through
the tests-only QFS_TEST_CLIENT_IDLE_MS to watch it expire), and a half-sent
request is closed on that deadline too; a WATCH stream is never cut by it.
Each closing is logged at debug level. A port with all 256 slots taken
answers a new connection's request that it is full, and the CLI moves on to
its next endpoint. A request's buffer grows with the bytes that arrive, not
with the size its header announces."""
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib

from cluster import free_base
from qfs import QUORUMFS, REPO, wait_until, write_file

MAGIC = 0x43534651  # "QFSC"
STATUS, GET, PUT = 1, 7, 8
HELLO_S = 10


def frame(type_, payload=b""):
    return struct.pack("<IBBHII", MAGIC, 1, type_, 0, len(payload),
                       zlib.crc32(payload)) + payload


def start(members, *args, name="n1"):
    ep = f"127.0.0.1:{free_base() + 3}"
    m = members.start(name, "--listen-client", ep, "--log-level", "debug", *args)
    m.ep = ep
    return m


def start_tls(members, tmp_path, name):
    """A member whose client port speaks mutual TLS, and an SSL context for a
    client of it (user alice)."""
    certs = tmp_path / "certs"
    r = subprocess.run([str(REPO / "contrib" / "gen-certs.sh"), str(certs), "n1=127.0.0.1",
                        "alice"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = start(members, "--client-cert", certs / "n1.crt", "--client-key", certs / "n1.key",
              "--client-ca", certs / "ca.crt", name=name)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / "alice.crt"), str(certs / "alice.key"))
    m.ssl = ctx
    return m


def connect(m, tls=False):
    host, port = m.ep.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    return m.ssl.wrap_socket(s, server_hostname=host) if tls else s


def local(s):
    return "%s:%d" % s.getsockname()


def answer(s):
    """One whole response frame (its header and payload), or b"" at EOF."""
    got = b""
    while len(got) < 16:
        b = s.recv(16 - len(got))
        if not b:
            return got
        got += b
    (n,) = struct.unpack_from("<I", got, 8)
    while len(got) < 16 + n:
        b = s.recv(16 + n - len(got))
        if not b:
            break
        got += b
    return got


def closed_after(s, t0, limit):
    """Seconds from t0 until the member closed s (EOF, reset or a TLS
    alert), reading with a deadline of `limit` seconds; None if it stayed
    open."""
    s.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, ssl.SSLError):
            return time.monotonic() - t0
    return None


def status_ok(s):
    s.sendall(frame(STATUS))
    a = answer(s)
    assert len(a) > 20 and a[5] == STATUS | 0x80, a
    assert struct.unpack_from("<i", a, 16)[0] == 0, a


def test_silent_and_half_sent_connections_are_closed(members, tmp_path):
    m = start(members)
    t = start_tls(members, tmp_path, "t1")
    t0 = time.monotonic()
    socks = {"silent": connect(m), "half": connect(m), "answered": connect(m),
             "tls silent": connect(t), "tls half hello": connect(t),
             "tls half header": connect(t, tls=True), "tls answered": connect(t, tls=True)}
    names = {k: local(s) for k, s in socks.items()}
    socks["half"].sendall(frame(STATUS)[:7])  # half a header
    socks["tls half hello"].sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello begins
    socks["tls half header"].sendall(frame(STATUS)[:7])
    status_ok(socks["answered"])
    status_ok(socks["tls answered"])

    times = {}

    def watch(name, s):
        times[name] = closed_after(s, t0, HELLO_S + 5)
    ths = [threading.Thread(target=watch, args=a) for a in socks.items()]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    for name in socks:
        if "answered" in name:
            # Answered once: it may wait for its next request far longer.
            assert times[name] is None, (name, times[name])
            continue
        assert times[name] is not None, f"{name}: still open after {HELLO_S + 5} s"
        assert HELLO_S - 0.5 <= times[name] <= HELLO_S + 3, (name, times[name])
    status_ok(socks["answered"])
    status_ok(socks["tls answered"])
    for name, addr in names.items():
        log = (t if name.startswith("tls") else m).log_text()
        line = rf"debug +\S+: client port: closing connection from (alice@)?{addr}: no request"
        if "answered" in name:
            assert not re.search(line, log), (name, log[-3000:])
        else:
            assert re.search(line + r" within 10000 ms of connecting", log), (name, log[-3000:])
    for s in socks.values():
        s.close()


def test_idle_deadline_between_requests_spares_watches(members, monkeypatch):
    monkeypatch.setenv("QFS_TEST_CLIENT_IDLE_MS", "1500")
    m = start(members)
    w = subprocess.Popen([str(QUORUMFS), "watch", "/", "--prefix", "--endpoints", m.ep],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        idle = connect(m)
        status_ok(idle)
        # A header, then only part of its payload: the rest never comes.
        body = connect(m)
        key = b"/k\0"
        payload = struct.pack("<I", len(key)) + key + struct.pack("<IQ", 0, 0) + \
            struct.pack("<I", 1) + b"\0"
        body.sendall(frame(GET, payload)[:16 + 5])
        t_idle = closed_after(idle, t0, 6)
        t_body = closed_after(body, t0, 6)
        assert t_idle is not None and 1.4 <= t_idle <= 4, t_idle
        assert t_body is not None and t_body <= 4, t_body
        # The watch has been idle much longer than that, and still streams.
        time.sleep(1)
        assert w.poll() is None, w.stderr.read()
        assert write_file(m.p("late"), "1") is None
        lines = []
        th = threading.Thread(target=lambda: lines.append(w.stdout.readline()), daemon=True)
        th.start()
        th.join(10)
        assert lines and lines[0].split()[1:] == ["PUT", "/late", "1"], lines
    finally:
        w.kill()
        w.wait()
    log = m.log_text()
    assert re.search(rf"debug +n1: client port: closing connection from {local(idle)}: "
                     rf"no whole request for 1500 ms", log), log[-3000:]
    assert re.search(rf"closing connection from {local(body)}: no whole request", log), \
        log[-3000:]
    idle.close()
    body.close()



def cli(*args, check=False):
    return subprocess.run([str(QUORUMFS), *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30, check=check)


def test_a_full_port_answers_that_it_is_full(members):
    m = start(members)
    other = start(members, name="n2")
    cli("put", "/where", "n2", "--endpoints", other.ep, check=True)
    held = [connect(m) for _ in range(256)]  # every slot, for HELLO_S
    try:
        # Told why, before anything is done: not a reset that leaves a
        # write "maybe applied".
        r = cli("put", "/x", "1", "--endpoints", m.ep)
        assert r.returncode == 1, r
        assert "too many client connections to this member" in r.stderr, r.stderr
        assert "may or may not" not in r.stderr, r.stderr
        # With more endpoints, the CLI asks the next one.
        r = cli("get", "/where", "--endpoints", f"{m.ep},{other.ep}")
        assert r.returncode == 0 and r.stdout == "n2", r
        # A slot given back is used again.
        held.pop().close()
        assert wait_until(lambda: cli("put", "/x", "1", "--endpoints", m.ep).returncode == 0, 5)
    finally:
        for s in held:
            s.close()
    assert cli("get", "/x", "--endpoints", m.ep).stdout == "1"
    assert any(re.search(r"client port: 127\.0\.0\.1:\d+ will be told this member is full: "
                         r"256 connections open", l) for l in m.warn_lines()), m.log_text()[-3000:]


def put_frame(key, value, claimed=None):
    """A PUT request; with `claimed`, a header that announces that many
    payload bytes (the CRC then cannot match, which is never reached)."""
    k = key.encode() + b"\0"
    payload = struct.pack("<I", len(k)) + k + struct.pack("<I", len(value)) + value
    n = len(payload) if claimed is None else claimed
    return struct.pack("<IBBHII", MAGIC, 1, PUT, 0, n, zlib.crc32(payload)) + payload


def vm_size(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) << 10 for l in f if l.startswith("VmSize:"))


def test_request_buffers_follow_the_bytes_sent(members):
    """A header announcing a 60 MiB request makes the member buffer what
    arrives, not the announced size up front: 32 such headers cost it
    little memory, and a real 5 MiB value still goes through."""
    m = start(members, "--max-value-bytes", "64M")
    before = vm_size(m.proc.pid)
    held = [connect(m) for _ in range(32)]
    try:
        for s in held:
            s.sendall(put_frame("/big", b"x" * 4096, claimed=60 << 20))
        status_ok(connect(m))  # every header is in by now
        for s in held:  # and more of each body than one read chunk
            s.sendall(b"x" * (128 << 10))
        status_ok(connect(m))
        grown = vm_size(m.proc.pid) - before
        assert grown < 512 << 20, f"{grown >> 20} MiB for 32 announced 60 MiB requests"
    finally:
        for s in held:
            s.close()
    s = connect(m)
    s.settimeout(30)
    s.sendall(put_frame("/big", b"v" * (5 << 20)))
    a = answer(s)
    assert a[5] == PUT | 0x80 and struct.unpack_from("<i", a, 16)[0] == 0, a[:40]
    assert os.path.getsize(m.p("big")) == 5 << 20
