"""Mutual TLS (SPEC §6). Between members: a cluster whose members hold
certificates from contrib/gen-certs.sh replicates and takes a learner; a
process with a certificate from another CA, or none, is refused before any
Raft message and the refusing member's log says why; so is one whose
certificate is from the cluster's CA but names another member; a non-loopback
--listen-peer needs certificates or --insecure-plaintext (checked in a
network namespace of its own, where 10.99.0.1 is a local address that is
not loopback). On the client port: the CLI with --cacert/--cert/--key works
(requests, NOTLEADER, watch, --join), the certificate's CN is logged as the
user, and a CLI without a certificate from the CA is refused with a clear
error. Certificate flags are checked at startup."""
import re
import signal
import subprocess
import time

import pytest

from cluster import cluster  # noqa: F401  (a fixture)
from qfs import QUORUMFS, REPO, read_file, wait_until, write_file

GEN_CERTS = REPO / "contrib" / "gen-certs.sh"


def gen_certs(dir_, *names):
    r = subprocess.run([str(GEN_CERTS), str(dir_), *names], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return dir_


def tls_flags(certs, name, ca=None, what="peer"):
    return [f"--{what}-cert", str(certs / f"{name}.crt"), f"--{what}-key",
            str(certs / f"{name}.key"), f"--{what}-ca", str(ca or certs / "ca.crt")]


def cli_tls(certs, user, ca=None):
    """The CLI's TLS flags (etcdctl's names)."""
    return ["--cacert", str(ca or certs / "ca.crt"), "--cert", str(certs / f"{user}.crt"),
            "--key", str(certs / f"{user}.key")]


def wait_log(m, pattern, timeout=10):
    rx = re.compile(pattern)
    line = wait_until(lambda: next((l for l in m.log_text().splitlines() if rx.search(l)), None),
                      timeout)
    assert line, f"{m.name} never logged /{pattern}/; log:\n{m.log_text()[-3000:]}"
    return line


def stranger(c, name, i, args):
    """A member on 127.0.0.i that believes it is in a cluster with n1 (so it
    dials n1's peer port at once); started without waiting for its mount."""
    c.index[name] = i
    m = c.members.create(name, "--listen-peer", c.peer(name), "--listen-client", c.client(name),
                         "--initial-cluster", f"n1={c.peer('n1')},{name}={c.peer(name)}",
                         *c.tuning, *args)
    c.ms[name] = m
    m.spawn()
    return m


def test_tls_cluster_replicates_takes_a_learner_and_refuses_another_ca(cluster, tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1", "n2=127.0.0.2", "n3=127.0.0.3",
                      "n4=127.0.0.4")
    other = gen_certs(tmp_path / "other", "n5=127.0.0.5")
    c = cluster.start(extra={n: tls_flags(certs, n) for n in ("n1", "n2", "n3")})
    for n in ("n1", "n2", "n3"):
        wait_log(c.m(n), r"listening for peers on \S+ \(mutual TLS\)")
    assert write_file(c.m("n1").p("db-host"), "10.0.0.5\n") is None
    assert write_file(c.m("n3").p("port"), "5432\n") is None
    for n in ("n1", "n2", "n3"):
        assert read_file(c.m(n).p("db-host")) == b"10.0.0.5\n"
        assert read_file(c.m(n).p("port")) == b"5432\n"

    # A learner with a certificate from the cluster's CA joins over TLS.
    j = c.join("n4", 4, extra=tls_flags(certs, "n4"))
    assert wait_until(lambda: j.p("db-host").exists(), 10)
    assert read_file(j.p("db-host")) == b"10.0.0.5\n"
    assert write_file(j.p("from-learner"), "x") is None
    assert wait_until(lambda: c.m("n2").p("from-learner").exists(), 5)

    # A stranger that knows the cluster's CA (it is public) but holds a
    # certificate from another one: n1 refuses it before reading anything.
    ours = ["n1", "n2", "n3", "n4"]
    leader = c.wait_leader(ours)
    term = c.status(leader)["term"]
    s = stranger(c, "n5", 5, tls_flags(other, "n5", ca=certs / "ca.crt"))
    line = wait_log(c.m("n1"), r"peer tls: refused a connection from 127\.0\.0\.5:")
    assert "certificate verify failed (unable to get local issuer certificate)" in line, line
    wait_log(s, r"peer tls: cannot connect to 127\.0\.0\.1:\d+: tlsv1 alert unknown ca")
    time.sleep(1.5)  # its elections would run now, if its votes got through
    assert c.wait_leader(ours) == leader and c.status(leader)["term"] == term
    assert c.status("n5")["leader"] == "", "the stranger found no one to follow"
    assert "connected from 127.0.0.5" not in c.m("n1").log_text()
    # One line per refusal, not one per retry (it retries every ~2 s).
    refusals = [l for l in c.m("n1").warn_lines() if "127.0.0.5" in l]
    assert len(refusals) == 1, refusals
    assert write_file(c.m("n2").p("still-fine"), "y") is None
    c.stop("n5")


def member_ids(c):
    """{name: id as `member list` prints it (16 hex digits)}."""
    return {m["name"]: m["id"] for m in c.cli_json("member", "list")}


def test_member_certificate_must_name_the_member(cluster, tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1", "n2=127.0.0.2", "n3=127.0.0.3",
                      "n5=127.0.0.5", "wrong=127.0.0.4")
    c = cluster.start(extra={n: tls_flags(certs, n) for n in ("n1", "n2", "n3")})
    assert write_file(c.m("n1").p("db-host"), "10.0.0.5\n") is None
    ids = member_ids(c)
    ours = ["n1", "n2", "n3"]
    leader = c.wait_leader(ours)
    term = c.status(leader)["term"]

    # A process holding a good certificate from the cluster's CA (n5's)
    # that calls itself n2: it claims n2's member id, and n1 refuses it
    # before any of its Raft messages, naming address, claim and CN.
    c.index["impostor"] = 5
    imp = c.members.create("impostor", "--listen-peer", c.peer("impostor"), "--listen-client",
                           c.client("impostor"), "--initial-cluster",
                           f"n1={c.peer('n1')},n2={c.peer('impostor')}", *c.tuning,
                           *tls_flags(certs, "n5"))
    imp.name = "n2"  # its --name; its files stay under impostor/
    c.ms["impostor"] = imp
    imp.spawn()
    line = wait_log(c.m("n1"), r"transport: refused a connection from 127\.0\.0\.5:")
    assert f'it claims to be member id={ids["n2"]} but its certificate has CN="n5"' in line, line
    time.sleep(1.5)  # its elections would run now, if its votes got through
    assert c.wait_leader(ours) == leader and c.status(leader)["term"] == term
    # The real n2 keeps its link to n1 (the impostor did not replace it).
    assert write_file(c.m("n1").p("after"), "x") is None
    assert wait_until(lambda: c.m("n2").p("after").exists(), 5)
    refusals = [l for l in c.m("n1").warn_lines() if "127.0.0.5" in l]
    assert len(refusals) == 1, refusals  # once, not once per retry
    c.stop("impostor")

    # A learner must be named in its certificate too: n4 joins holding
    # the certificate of "wrong". It is added, but no member talks to it.
    j = c.join("n4", 4, extra=tls_flags(certs, "wrong"))
    n4 = member_ids(c)["n4"]
    leader = c.wait_leader(ours)
    line = wait_log(c.m(leader), r"transport: refused to talk to member id=" + n4)
    assert f'at {c.peer("n4")}: its certificate has CN="wrong"' in line, line
    wait_log(c.m(leader), r"refused a connection from 127\.0\.0\.4:\d+: it claims to be "
             rf'member id={n4} but its certificate has CN="wrong"')
    time.sleep(1)
    st = c.status("n4")
    assert st["leader"] == "" and st["applied_index"] == 0, st
    c.cli("member", "remove", "n4")


def test_plaintext_member_refused_by_tls_member(cluster, tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1")
    c = cluster.start(n=1, extra={"n1": tls_flags(certs, "n1")})
    s = stranger(c, "n2", 2, [])
    line = wait_log(c.m("n1"), r"peer tls: refused a connection from 127\.0\.0\.2:")
    assert "the other end does not speak TLS" in line, line
    wait_log(s, r"listening for peers on \S+ \(plain TCP\)")
    c.stop("n2")


def serve(tmp_path, *args, netns=False, wait_for=None, timeout=10):
    """Runs `quorumfs serve` without a mount (in a network namespace of its
    own where 10.99.0.1 is a local, non-loopback address, if netns). With
    wait_for: waits for that log line, stops the member with SIGTERM and
    returns (exit code, log); else returns when it exits by itself."""
    cmd = [str(QUORUMFS), "serve", "--data-dir", str(tmp_path / "data"), *args]
    if netns:
        setup = "ip link set lo up && ip addr add 10.99.0.1/32 dev lo && exec \"$@\""
        cmd = ["unshare", "--net", "sh", "-c", setup, "sh", *cmd]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if wait_for is None:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    lines = []
    deadline = time.monotonic() + timeout
    try:
        for line in p.stdout:
            lines.append(line)
            if re.search(wait_for, line) or time.monotonic() > deadline:
                break
        p.send_signal(signal.SIGTERM)
        rest, _ = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, "".join(lines) + rest


def test_non_loopback_listen_peer_needs_certs_or_insecure_plaintext(tmp_path):
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    addr = "10.99.0.1:2380"
    rc, out = serve(tmp_path, "--listen-peer", addr, netns=True)
    assert rc == 2, out
    assert f"--listen-peer {addr} is not a loopback address" in out, out
    assert "--peer-cert" in out and "--insecure-plaintext" in out, out
    assert not (tmp_path / "data").exists(), "refused before touching the data dir"

    rc, out = serve(tmp_path, "--listen-peer", addr, "--insecure-plaintext", netns=True,
                    wait_for=r"serving")
    assert rc == 0, out
    assert f"listening for peers on {addr} (plain TCP)" in out, out

    certs = gen_certs(tmp_path / "certs", "n1=10.99.0.1")
    rc, out = serve(tmp_path, "--listen-peer", addr, *tls_flags(certs, "n1"), netns=True,
                    wait_for=r"serving")
    assert rc == 0, out
    assert f"listening for peers on {addr} (mutual TLS)" in out, out

    # Loopback needs neither.
    rc, out = serve(tmp_path, "--listen-peer", "127.0.0.1:0", netns=True, wait_for=r"serving")
    assert rc == 0 and "(plain TCP)" in out, out


def test_certificate_flags_checked_at_startup(tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1", "n2=127.0.0.2")
    base = ["--name", "n1", "--listen-peer", "127.0.0.1:0"]

    rc, out = serve(tmp_path, *base, "--peer-cert", str(certs / "n1.crt"))
    assert rc == 2 and "go together: missing --peer-key --peer-ca" in out, out
    rc, out = serve(tmp_path, *base, "--listen-client", "127.0.0.1:0", "--client-ca",
                    str(certs / "ca.crt"))
    assert rc == 2 and "go together: missing --client-cert --client-key" in out, out
    rc, out = serve(tmp_path, *base, "--listen-client", "127.0.0.1:0", "--client-cert",
                    str(certs / "n1.crt"), "--client-key", str(certs / "n2.key"), "--client-ca",
                    str(certs / "ca.crt"))
    assert rc != 0 and "--client-key" in out and "does not match" in out, out

    missing = tmp_path / "nope.key"
    rc, out = serve(tmp_path, *base, "--peer-cert", str(certs / "n1.crt"), "--peer-key",
                    str(missing), "--peer-ca", str(certs / "ca.crt"))
    assert rc != 0 and f"--peer-key {missing}: No such file or directory" in out, out

    rc, out = serve(tmp_path, *base, "--peer-cert", str(certs / "n1.crt"), "--peer-key",
                    str(certs / "n2.key"), "--peer-ca", str(certs / "ca.crt"))
    assert rc != 0, out
    assert (f"--peer-key {certs / 'n2.key'} does not match the certificate in --peer-cert "
            f"{certs / 'n1.crt'}") in out, out

    rc, out = serve(tmp_path, *base, "--peer-cert", str(certs / "n1.crt"), "--peer-key",
                    str(certs / "n1.key"), "--peer-ca", str(certs / "n1.key"))
    assert rc != 0 and f"--peer-ca {certs / 'n1.key'}: no usable CA certificate" in out, out

    rc, out = serve(tmp_path, *base, "--insecure-plaintext", *tls_flags(certs, "n1"))
    assert rc == 2 and "--insecure-plaintext contradicts" in out, out


def test_client_port_tls(cluster, tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1", "n2=127.0.0.2", "n3=127.0.0.3",
                      "n4=127.0.0.4", "alice")
    other = gen_certs(tmp_path / "other", "mallory")

    def flags(n):
        return tls_flags(certs, n) + tls_flags(certs, n, what="client") + \
            (["--log-level", "debug"] if n == "n1" else [])
    c = cluster.start(extra={n: flags(n) for n in ("n1", "n2", "n3")})
    wait_log(c.m("n1"), r"client port listening on \S+ \(mutual TLS\)")
    alice = cli_tls(certs, "alice")

    # Requests through any member; a follower's NOTLEADER is followed over TLS.
    follower = c.followers()[0]
    c.cli("put", "/config/port", "5432", *alice, endpoints=[follower])
    assert c.cli("get", "/config/port", *alice, endpoints=["n1"]).stdout == "5432"
    assert read_file(c.m("n3").p("config/port")) == b"5432"
    assert {m["name"] for m in c.cli_json("member", "list", *alice)} == {"n1", "n2", "n3"}
    wait_log(c.m("n1"), r"client port: 127\.0\.0\.1:\d+ is user alice")

    # A watch over TLS sees a change made through the mount.
    w = subprocess.Popen([str(QUORUMFS), "watch", "/config", "--prefix", *alice, "--endpoints",
                          c.endpoints()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        time.sleep(0.5)
        assert write_file(c.m("n2").p("config/host"), "db1") is None
        line = w.stdout.readline()
        assert line.split()[1:] == ["PUT", "/config/host", "db1"], line
    finally:
        w.kill()
        w.wait()

    # Refused: plain TCP, no certificate, another CA's certificate, a CA
    # that does not sign the members'. Nothing is written by any of them.
    r = c.cli("put", "/x", "1", endpoints=["n1"], check=False)
    assert r.returncode == 1 and "give --cacert, --cert and --key" in r.stderr, r.stderr
    r = c.cli("put", "/x", "1", "--cacert", str(certs / "ca.crt"), endpoints=["n1"],
              check=False)
    assert r.returncode == 1 and "certificate required" in r.stderr, r.stderr
    assert "may or may not" not in r.stderr, "refused before the request was sent"
    r = c.cli("get", "/config/port", *cli_tls(other, "mallory", ca=certs / "ca.crt"),
              endpoints=["n1"], check=False)
    assert r.returncode == 1 and "alert unknown ca" in r.stderr, r.stderr
    line = wait_log(c.m("n1"), r"client tls: refused a connection from 127\.0\.0\.1:\d+: "
                    r"certificate verify failed")
    assert "unable to get local issuer certificate" in line, line
    r = c.cli("get", "/config/port", *cli_tls(certs, "alice", ca=other / "ca.crt"),
              endpoints=["n1"], check=False)
    assert r.returncode == 1 and "certificate verify failed" in r.stderr, r.stderr
    assert not c.m("n1").p("x").exists()

    # A learner joins through a TLS client port with its own certificate.
    j = c.join("n4", 4, via="n1", extra=flags("n4"))
    wait_log(c.m("n1"), r"client port: [\d.]+:\d+ is user n4")
    assert wait_until(lambda: j.p("config/host").exists(), 10)
    assert c.cli("get", "/config/host", *alice, endpoints=["n4"]).stdout == "db1"
