"""`quorumfs serve` as a command: --help, bad flags, --config (SPEC §2, §2.1)."""
import os
import subprocess

import pytest

from qfs import QUORUMFS, is_mounted, read_file


def run(*args, timeout=20):
    return subprocess.run([QUORUMFS, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_serve_help():
    r = run("serve", "--help")
    assert r.returncode == 0
    for flag in ("--name", "--data-dir", "--mount", "--quota-bytes", "--max-value-bytes",
                 "--auto-compact-revisions", "--snapshot-entries", "--log-level", "--config"):
        assert flag in r.stdout + r.stderr, flag


@pytest.mark.parametrize("args, word", [
    (["--bogus", "x"], "bogus"),
    (["--quota-bytes", "abc"], "abc"),
    (["--log-level", "loud"], "log-level"),
    (["--log-format", "xml"], "log-format"),
])
def test_bad_flags_one_clear_line(tmp_path, args, word):
    r = run("serve", "--data-dir", tmp_path / "d", "--mount", tmp_path, *args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], r.stderr
    assert not is_mounted(tmp_path)


@pytest.mark.expect_errors
def test_missing_mount_point_fails_clearly(members):
    m = members.create("n1")
    m.mnt.rmdir()
    m.spawn()
    assert m.wait_exit() != 0
    assert str(m.mnt) in m.log_text()


def test_config_file(members, tmp_path):
    conf = tmp_path / "n1.conf"
    conf.write_text("# a member from a config file\n"
                    "quota-bytes = 8388608\n"
                    "max-value-bytes = 100\n")
    m = members.start("n1", "--config", conf)
    st = os.statvfs(m.p())
    assert abs(st.f_blocks * st.f_frsize - 8388608) <= max(st.f_frsize, 4096)
    r = m.sh("head -c 101 /dev/zero > big", check=False)
    assert r.returncode != 0 and "File too large" in r.stderr
    m.sh("echo ok > small")
    assert read_file(m.p("small")) == b"ok\n"
