"""Running under a service manager (SPEC §7, contrib/systemd): with
NOTIFY_SOCKET set, as systemd's Type=notify sets it, `quorumfs serve` sends
READY=1 once its tree is mounted; a bad NOTIFY_SOCKET is logged and the
member serves anyway. Also checks the shipped unit file's essentials."""
import os
import socket

from qfs import REPO, is_mounted, read_file, write_file


def listen(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(30)
    return s


def test_ready_once_mounted(members, tmp_path, monkeypatch):
    s = listen(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    m = members.create("n1")
    m.spawn()
    assert s.recv(4096) == b"READY=1"
    assert is_mounted(m.mnt)
    write_file(m.p("k"), b"v")
    assert read_file(m.p("k")) == b"v"
    s.settimeout(0.5)
    try:
        extra = s.recv(4096)
    except socket.timeout:
        extra = None
    assert extra is None, extra


def test_ready_on_an_abstract_socket(members, monkeypatch):
    name = f"quorumfs-test-{os.getpid()}-{id(members)}"
    s = listen("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    members.create("n1").spawn()
    assert s.recv(4096) == b"READY=1"


def test_bad_notify_socket_is_logged_and_serving_goes_on(members, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "not/absolute")
    m = members.start("n1")
    assert any("NOTIFY_SOCKET" in l and "invalid argument" in l for l in m.warn_lines()), \
        m.log_text()
    write_file(m.p("k"), b"v")
    assert read_file(m.p("k")) == b"v"


def test_unit_file():
    unit = (REPO / "contrib" / "systemd" / "quorumfs@.service").read_text()
    for line in ("Type=notify", "ExecStart=/usr/local/bin/quorumfs serve --config "
                 "/etc/quorumfs/%i.conf", "KillMode=mixed", "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line
