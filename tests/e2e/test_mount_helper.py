"""mount.quorumfs and the daemon's mount lifecycle: `mount -t quorumfs`, `umount`,
option mapping, failures reported by the helper (SPEC §2.1, issue #2)."""
import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest

from qfs import (HELPER, daemon_pids, is_mounted, lazy_unmount, read_file, sh, wait_until,
                 write_file)

SBIN_HELPER = Path("/sbin/mount.quorumfs")


@pytest.fixture
def sbin_helper():
    """/sbin/mount.quorumfs pointing at the built helper, for mount(8)."""
    created = False
    if os.path.lexists(SBIN_HELPER):
        if os.path.realpath(SBIN_HELPER) != str(HELPER.resolve()):
            pytest.skip(f"{SBIN_HELPER} is installed and is not {HELPER}; not replacing it")
    else:
        os.symlink(HELPER.resolve(), SBIN_HELPER)
        created = True
    yield SBIN_HELPER
    if created:
        os.unlink(SBIN_HELPER)


def helper_member(members, name):
    """A Member whose daemon the helper starts: its log is DATA_DIR/quorumfs.log."""
    m = members.create(name)
    m.log_path = m.data_dir / "quorumfs.log"
    return m


def wait_daemon_gone(m, pids):
    assert pids, "no daemon process found for the mount"
    gone = wait_until(lambda: not any(p in daemon_pids(m.mnt) for p in pids), 15)
    assert gone, f"daemon {pids} still running after umount; log:\n{m.log_text()}"
    assert not is_mounted(m.mnt)


def test_helper_help():
    r = subprocess.run([HELPER, "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "data_dir" in r.stdout and "mount" in r.stdout


def test_mount_t_quorumfs_then_umount(members, sbin_helper):
    m = helper_member(members, "n1")
    opts = f"data_dir={m.data_dir},name=n1,quota_bytes={64 << 20},noauto,_netdev"
    r = sh(f"mount -t quorumfs -o {opts} quorumfs {m.mnt}", check=False)
    assert r.returncode == 0, r.stderr
    # The helper returned: the mount must be ready now, without waiting.
    assert is_mounted(m.mnt)
    assert m.status()["name"] == "n1"
    st = os.statvfs(m.mnt)
    assert abs(st.f_blocks * st.f_frsize - (64 << 20)) <= max(st.f_frsize, 4096), \
        "quota_bytes= did not reach the daemon"
    m.sh("echo hello > greeting")
    assert m.sh("cat greeting").stdout == "hello\n"
    assert (m.data_dir / "quorumfs.log").exists()
    pids = daemon_pids(m.mnt)
    assert len(pids) == 1, pids

    r = sh(f"umount {m.mnt}", check=False)
    assert r.returncode == 0, r.stderr
    wait_daemon_gone(m, pids)

    # Mount again on the same data dir: the data is still there.
    r = sh(f"mount -t quorumfs -o data_dir={m.data_dir},name=n1 quorumfs {m.mnt}", check=False)
    assert r.returncode == 0, r.stderr
    assert read_file(m.p("greeting")) == b"hello\n"
    pids = daemon_pids(m.mnt)
    sh(f"umount {m.mnt}")
    wait_daemon_gone(m, pids)


def test_fstab_line(members, sbin_helper, tmp_path):
    """An fstab line like contrib/fstab.example's, through `mount DIR` (-T: our fstab)."""
    m = helper_member(members, "n1")
    fstab = tmp_path / "fstab"
    fstab.write_text(f"quorumfs {m.mnt} quorumfs data_dir={m.data_dir},name=n1,"
                     "allow_other,default_permissions,_netdev,noauto 0 0\n")
    r = sh(f"mount -T {fstab} {m.mnt}", check=False)
    assert r.returncode == 0, r.stderr
    assert m.status()["name"] == "n1"
    m.sh("mkdir d && echo x > d/f")
    pids = daemon_pids(m.mnt)
    r = sh(f"umount {m.mnt}", check=False)
    assert r.returncode == 0, r.stderr
    wait_daemon_gone(m, pids)


def test_helper_maps_serve_flags_and_mount_options(members):
    m = helper_member(members, "n2")
    r = subprocess.run([HELPER, "quorumfs", m.mnt, "-n", "-o",
                        f"rw,noauto,defaults,data_dir={m.data_dir},name=n2,max_value_bytes=1000,"
                        "log_level=debug,x-systemd.automount"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert m.status()["name"] == "n2"
    assert write_file(m.p("ok"), b"a" * 1000) is None
    assert write_file(m.p("big"), b"a" * 1001) == errno.EFBIG, \
        "max_value_bytes= did not reach the daemon"
    pids = daemon_pids(m.mnt)
    cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
    assert b"--max-value-bytes" in cmdline and b"--log-level" in cmdline
    assert not any(b"noauto" in a or b"x-systemd" in a for a in cmdline), cmdline
    # The daemon is detached: its own session, not in our process group.
    assert os.getsid(pids[0]) == pids[0]
    sh(f"fusermount3 -u {m.mnt}")
    wait_daemon_gone(m, pids)


def test_helper_requires_data_dir(members):
    m = members.create("n1")
    r = subprocess.run([HELPER, "quorumfs", m.mnt, "-o", "name=n1"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "data_dir" in r.stderr
    assert not is_mounted(m.mnt)
    assert daemon_pids(m.mnt) == []


@pytest.mark.expect_errors
def test_helper_reports_daemon_failure(members):
    m = helper_member(members, "n1")
    r = subprocess.run([HELPER, "quorumfs", m.mnt, "-o",
                        f"data_dir={m.data_dir},log_level=bogus"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 32, (r.returncode, r.stderr)
    assert r.stderr.startswith("mount.quorumfs: quorumfs serve failed: "), r.stderr
    assert len(r.stderr.strip()) > len("mount.quorumfs: quorumfs serve failed: ")
    assert not is_mounted(m.mnt)
    assert daemon_pids(m.mnt) == []


def test_helper_refuses_missing_mount_point(tmp_path):
    r = subprocess.run([HELPER, "quorumfs", tmp_path / "nope", "-o",
                        f"data_dir={tmp_path / 'd'}"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 32
    assert "nope" in r.stderr


def test_external_unmount_stops_daemon(members):
    m = members.start("n1")
    m.sh("echo v > k")
    sh(f"fusermount3 -u {m.mnt}")
    assert m.wait_exit() == 0, m.log_text()
    assert not is_mounted(m.mnt)
    m.restart()
    assert read_file(m.p("k")) == b"v\n"
    sh(f"umount {m.mnt}")
    assert m.wait_exit() == 0, m.log_text()


def test_sigterm_with_open_file_unmounts(members):
    """SIGTERM never leaves a dead 'Transport endpoint is not connected' mount."""
    m = members.start("n1")
    m.sh("echo v > k")
    cwd_holder = subprocess.Popen(["sleep", "30"], cwd=m.mnt)
    try:
        m.proc.send_signal(signal.SIGTERM)
        assert m.wait_exit() == 0
        assert not is_mounted(m.mnt)
    finally:
        cwd_holder.kill()
        cwd_holder.wait()
        lazy_unmount(m.mnt)


def test_helper_option_mapping_fake_mode(tmp_path):
    """-f (fake) prints the serve command it would run, without running it."""
    mnt = tmp_path / "m"
    mnt.mkdir()
    opts = ("rw,noauto,_netdev,nofail,defaults,x-systemd.requires=net,comment=a,"
            "data_dir=/var/lib/q,name=n1,quota_bytes=100,log_level=debug,snapshot_entries=7,"
            "initial_cluster=n1=10.0.0.1:2380,n2=10.0.0.2:2380,n3=10.0.0.3:2380,"
            "listen_peer=10.0.0.1:2380,allow_other,consistency=serializable,attr_timeout=1")
    r = subprocess.run([HELPER, "-f", "-s", "quorumfs", mnt, "-o", opts], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    argv = r.stderr.split("running ", 1)[1].split(" >>")[0].split()
    assert argv[1] == "serve"
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert flags == {
        "--quota-bytes": "100", "--log-level": "debug", "--snapshot-entries": "7",
        "--initial-cluster": "n1=10.0.0.1:2380,n2=10.0.0.2:2380,n3=10.0.0.3:2380",
        "--listen-peer": "10.0.0.1:2380", "--data-dir": "/var/lib/q", "--name": "n1",
        "--mount": str(mnt), "-o": "rw,allow_other,consistency=serializable,attr_timeout=1",
    }
    assert not os.path.exists("/var/lib/q/quorumfs.log"), "fake mode must not start anything"
