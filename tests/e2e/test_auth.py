"""Users and roles on the client port (SPEC §6): a certificate's CN is the
user; roles grant read or readwrite on key prefixes. Root enables auth;
alice (read on /config) can get but not put; bob (readwrite on /config/app)
puts under it and nowhere else; txn compares and requests and watches are
checked; admin needs role root; a user added through n1 is enforced by n3;
the state survives restarts (from a snapshot image and the WAL), is the
same on every member, and travels in `snapshot save`/`restore`. A plain-TCP
client port with auth on answers only status. The mount is not affected."""
import json
import subprocess
import time

from cluster import Cluster, cluster  # noqa: F401  (a fixture)
from qfs import QUORUMFS, read_file, write_file
from test_tls import cli_tls, gen_certs, tls_flags

USERS = ("root", "alice", "bob", "carol")


def member_flags(certs, n, *more):
    return tls_flags(certs, n) + tls_flags(certs, n, what="client") + list(more)


class As:
    """The CLI as a user (a certificate from certs) through one member."""

    def __init__(self, c, certs, user):
        self.c, self.certs, self.user = c, certs, user

    def run(self, *args, via="n1", stdin=None, check=True):
        cmd = [str(QUORUMFS), *map(str, args), *cli_tls(self.certs, self.user), "--endpoints",
               self.c.client(via)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                           input=stdin if stdin is not None else "")
        if check:
            assert r.returncode == 0, f"{self.user}: {' '.join(map(str, args))}: {r.stderr}"
        return r

    def ok(self, *args, **kw):
        return self.run(*args, **kw).stdout

    def json(self, *args, **kw):
        return json.loads(self.run(*args, "-w", "json", **kw).stdout)

    def denied(self, *args, via="n1", stdin=None, want=""):
        """Refused with one line on stderr that contains want."""
        r = self.run(*args, via=via, stdin=stdin, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, (args, r.returncode, r.stderr)
        assert want in lines[0], (want, lines[0])
        return lines[0]


def set_up_roles(root):
    """ro: read /config; app: readwrite /config/app; alice has ro, bob app."""
    for args in (("user", "add", "root"), ("user", "grant-role", "root", "root"),
                 ("role", "add", "ro"), ("role", "grant-permission", "ro", "read", "/config"),
                 ("role", "add", "app"),
                 ("role", "grant-permission", "app", "readwrite", "/config/app"),
                 ("user", "add", "alice"), ("user", "grant-role", "alice", "ro"),
                 ("user", "add", "bob"), ("user", "grant-role", "bob", "app")):
        root.ok(*args)


def check_decisions(alice, bob, stranger, via):
    """What alice, bob and a stranger (no user) may do, asked through via."""
    assert alice.ok("get", "/config/db/host", via=via) == "10.0.0.5"
    assert "/config/db/host" in alice.ok("get", "/config", "--prefix", via=via)
    alice.denied("put", "/config/db/host", "x", via=via,
                 want="user alice may not write /config/db/host (role ro grants read on "
                      "/config)")
    alice.denied("get", "/secret", via=via, want="user alice may not read /secret")
    alice.denied("get", "/", "--prefix", via=via, want="user alice may not read /")
    bob.ok("put", "/config/app/port", "8080", via=via)
    bob.denied("put", "/config/db/host", "x", via=via,
               want="user bob may not write /config/db/host")
    bob.denied("put", "/config/apple", "x", via=via, want="user bob may not write /config/apple")
    bob.denied("del", "/config", "--prefix", via=via, want="user bob may not write /config and")
    stranger.denied("get", "/config/db/host", via=via, want=f"user {stranger.user} does not exist")


def test_roles_are_enforced_the_same_on_every_member(cluster, tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1", "n2=127.0.0.2", "n3=127.0.0.3",
                      *USERS, "dave")
    # Few entries per snapshot: a restart loads users and roles from an image.
    c = cluster.start(extra={n: member_flags(certs, n, "--snapshot-entries", "8")
                             for n in ("n1", "n2", "n3")})
    root, alice, bob, carol = (As(c, certs, u) for u in USERS)

    # Auth is off: anyone from the CA may write; enabling needs user root,
    # both as the one asking and in the state.
    alice.ok("put", "/config/db/host", "10.0.0.5")
    alice.ok("put", "/secret", "s3cr3t")
    alice.denied("auth", "enable", want="auth enable must come from user root")
    root.denied("auth", "enable", want="needs a user root with role root")
    set_up_roles(root)
    root.denied("user", "add", "alice", want="user alice already exists")
    root.denied("user", "grant-role", "alice", "nope", want="no role nope")
    root.denied("role", "add", "root", want="role root is built in")
    root.ok("auth", "enable")
    # Through n3: its read point makes it apply everything before it.
    assert root.json("auth", "status", via="n3") == {"enabled": True, "users": 3, "roles": 2}

    check_decisions(alice, bob, carol, "n3")
    # Administration needs role root; carol has no user at all.
    alice.denied("user", "list", want="user alice may not list users and roles: that needs "
                                      "role root")
    alice.denied("auth", "disable", via="n2", want="may not change users and roles")
    bob.denied("compact", "1", want="user bob may not compact")
    bob.denied("snapshot", "save", tmp_path / "b.snap", want="may not save a snapshot")
    bob.denied("member", "remove", "n2", want="may not change the members")
    assert {m["name"] for m in bob.json("member", "list")} == {"n1", "n2", "n3"}
    root.denied("user", "delete", "root", want="cannot be deleted while auth is enabled")
    root.denied("user", "revoke-role", "root", "root", want="keeps role root")

    # A transaction: compares need read, requests readwrite, on every key.
    ok = 'value("/config/app/port") = "8080"\n\nput /config/app/mode blue\n\n'
    assert bob.ok("txn", stdin=ok, via="n2").splitlines()[0] == "SUCCESS"
    bob.denied("txn", via="n2", stdin='\nput /config/app/a 1\ndel /config/db/host\n\n',
               want="user bob may not write /config/db/host")
    bob.denied("txn", via="n2", stdin='value("/secret") = "x"\n\nput /config/app/a 1\n\n',
               want="user bob may not read /secret")
    alice.denied("txn", stdin='value("/config/db/host") = "10.0.0.5"\n\nput /config/x 1\n\n',
                 want="user alice may not write /config/x")
    assert root.ok("get", "/config/app/mode") == "blue"
    assert root.run("get", "/config/app/a", check=False).returncode == 1  # nothing applied

    # A watch: allowed under a granted prefix, refused at once elsewhere.
    w = subprocess.Popen([str(QUORUMFS), "watch", "/config", "--prefix",
                          *cli_tls(certs, "alice"), "--endpoints", c.client("n2")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        root.ok("put", "/config/db/port", "5432", via="n3")
        line = w.stdout.readline()
        assert line.split()[1:] == ["PUT", "/config/db/port", "5432"], line
    finally:
        w.kill()
        w.wait()
    alice.denied("watch", "/secret", want="user alice may not read /secret")

    # Leases: granting needs only a user; revoking deletes the keys
    # attached, so it needs readwrite on every one of them.
    lease = bob.json("lease", "grant", "60")["id"]
    bob.ok("put", "/config/app/svc", "up", "--lease", lease)
    root.ok("put", "/elsewhere", "x", "--lease", lease)
    bob.denied("lease", "revoke", lease, want="user bob may not write /elsewhere")
    assert root.ok("get", "/elsewhere") == "x"
    bob.denied("lease", "list", "-w", "json", want="may not list the keys of leases")
    assert lease in bob.ok("lease", "list")
    root.ok("del", "/elsewhere")
    bob.ok("lease", "revoke", lease)
    assert root.run("get", "/config/app/svc", check=False).returncode == 1

    # The mount keeps kernel permissions only: users and roles are not its.
    assert write_file(c.m("n2").p("secret"), "from the mount") is None
    assert read_file(c.m("n3").p("secret")) == b"from the mount"

    # Every member holds the same users and roles.
    users = [root.json("user", "list", via=n) for n in ("n1", "n2", "n3")]
    roles = [root.json("role", "list", via=n) for n in ("n1", "n2", "n3")]
    assert users[0] == users[1] == users[2] == [
        {"name": "alice", "roles": ["ro"]}, {"name": "bob", "roles": ["app"]},
        {"name": "root", "roles": ["root"]}]
    assert roles[0] == roles[1] == roles[2]
    assert roles[0][2] == {"name": "ro", "builtin": False,
                           "permissions": [{"permission": "read", "prefix": "/config"}]}

    # A change through n1 holds on n3; a revoked grant too.
    root.ok("user", "add", "carol")
    root.ok("user", "grant-role", "carol", "app")
    root.ok("auth", "status", via="n3")
    carol.ok("put", "/config/app/c", "1", via="n3")
    root.ok("role", "revoke-permission", "app", "/config/app")
    root.ok("auth", "status", via="n3")
    carol.denied("put", "/config/app/c", "2", via="n3",
                 want="user carol may not write /config/app/c")

    # After a restart (snapshot image + WAL) n3 decides as before.
    root.ok("role", "grant-permission", "app", "readwrite", "/config/app")
    c.stop("n3")
    assert list((c.m("n3").data_dir / "snap").glob("*.snap")), "no snapshot to restart from"
    c.restart("n3")
    check_decisions(alice, bob, As(c, certs, "dave"), "n3")
    c.stop("n1")
    c.restart("n1")
    assert root.json("auth", "status", via="n1") == {"enabled": True, "users": 4, "roles": 2}
    alice.denied("put", "/config/db/host", "x", via="n1", want="role ro grants read")

    # Disabled again: everyone may do everything.
    root.ok("auth", "disable")
    alice.ok("put", "/config/db/host", "10.0.0.6", via="n2")
    assert root.json("auth", "status", via="n3")["enabled"] is False


def test_auth_travels_in_snapshot_save_and_restore(cluster, members, tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1", "r1=127.0.0.1", *USERS)
    c = cluster.start(n=1, extra={"n1": member_flags(certs, "n1")})
    root = As(c, certs, "root")
    root.ok("put", "/config/db/host", "10.0.0.5")
    set_up_roles(root)
    root.ok("auth", "enable")
    backup = tmp_path / "backup.snap"
    root.ok("snapshot", "save", backup)

    c2 = Cluster(members)
    c2.index["r1"] = 1
    initial = f"r1={c2.peer('r1')}"
    m = c2._create("r1", 1, ["--initial-cluster", initial, "--cluster-token", "restored"],
                   extra=member_flags(certs, "r1"))
    r = subprocess.run([str(QUORUMFS), "snapshot", "restore", str(backup), "--data-dir",
                        str(m.data_dir), "--name", "r1", "--initial-cluster", initial],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    c.stop("n1")
    m.spawn()
    m.wait_ready()
    dump = subprocess.run([str(QUORUMFS), "dump-wal", str(c.m("n1").data_dir)],
                          capture_output=True, text=True, timeout=60).stdout
    assert " auth from n1 " in dump and "role grant-permission ro read /config" in dump, dump
    root2, alice2 = As(c2, certs, "root"), As(c2, certs, "alice")
    assert root2.json("auth", "status", via="r1") == {"enabled": True, "users": 3, "roles": 2}
    assert alice2.ok("get", "/config/db/host", via="r1") == "10.0.0.5"
    alice2.denied("put", "/config/db/host", "x", via="r1", want="role ro grants read")


def test_plain_tcp_client_port_answers_only_status_when_auth_is_on(cluster, tmp_path):
    certs = gen_certs(tmp_path / "certs", "n1=127.0.0.1", "n2=127.0.0.2", "n3=127.0.0.3",
                      "root", "alice")
    # n1's client port speaks TLS; n2's and n3's plain TCP.
    c = cluster.start(extra={"n1": member_flags(certs, "n1"), "n2": tls_flags(certs, "n2"),
                             "n3": tls_flags(certs, "n3")})
    root = As(c, certs, "root")
    assert c.cli("put", "/config/x", "1", endpoints=["n2"]).returncode == 0  # auth off
    set_up_roles(root)
    # Auth off: anyone may look, in the simple format too.
    assert c.cli("user", "list", endpoints=["n2"]).stdout == \
        "alice roles=ro\nbob roles=app\nroot roles=root\n"
    assert c.cli("role", "list", endpoints=["n2"]).stdout == \
        "root everything (built in)\napp readwrite /config/app\nro read /config\n"
    assert c.cli("auth", "status", endpoints=["n3"]).stdout == \
        "auth disabled (3 users, 2 roles besides root)\n"
    r = c.cli("auth", "enable", endpoints=["n2"], check=False)
    assert r.returncode == 1 and "auth enable must come from user root" in r.stderr, r.stderr
    root.ok("auth", "enable")
    # n2 answers status to anyone; every other request without a user is
    # refused, whatever it is, once n2 applied the enable.
    assert "n2" in c.cli("status", endpoints=["n2"]).stdout
    deadline = time.time() + 10
    while True:
        r = c.cli("get", "/config/x", endpoints=["n2"], check=False)
        if r.returncode != 0 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert r.returncode == 1, r.stdout
    assert "auth is enabled and this connection has no user" in r.stderr, r.stderr
    for args in (("put", "/config/x", "2"), ("auth", "status"), ("member", "list"),
                 ("watch", "/config")):
        r = c.cli(*args, endpoints=["n3"], check=False)
        assert r.returncode == 1 and "this connection has no user" in r.stderr, (args, r.stderr)
    assert As(c, certs, "alice").ok("get", "/config/x") == "1"
    # Disabled through the TLS port: the plain ports serve again.
    root.ok("auth", "disable")
    deadline = time.time() + 10
    while c.cli("get", "/config/x", endpoints=["n2"], check=False).returncode != 0:
        assert time.time() < deadline, "n2 never applied auth disable"
        time.sleep(0.1)


def test_auth_commands_usage():
    """--help, and arguments the CLI refuses before asking anyone."""
    def run(*args):
        return subprocess.run([str(QUORUMFS), *map(str, args)], capture_output=True, text=True,
                              timeout=30)
    for cmd in (("user", "add"), ("role", "grant-permission"), ("auth", "status")):
        r = run(*cmd, "--help")
        assert r.returncode == 0 and "The role root is built in" in r.stdout, r.stdout
        assert f"usage: quorumfs {' '.join(cmd)}" in r.stdout, r.stdout
    r = run("role", "grant-permission", "ro", "write", "/x")
    assert r.returncode == 1 and "the permission is read or readwrite, not 'write'" in r.stderr
    r = run("role", "grant-permission", "ro", "read", "x")
    assert r.returncode == 1 and "keys are absolute paths" in r.stderr, r.stderr
    r = run("user", "add", "x" * 65)
    assert r.returncode == 1 and "user names are 1 to 64 printable" in r.stderr, r.stderr
    r = run("user", "grant-role", "alice")
    assert r.returncode == 2 and "missing NAME ROLE" in r.stderr, r.stderr
