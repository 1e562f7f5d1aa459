"""Mount options (-o, SPEC §3.9) and permission checks (SPEC §3.8, §6)."""
import errno
import os

from qfs import read_file, write_file

# Run from inside the mount with relative paths, so that pytest's 0700
# temp directories above it do not decide the outcome.
AS_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups"


def test_ro_mount(members):
    m = members.start("n1")
    m.sh("mkdir d && echo v > d/k")
    m.stop()
    m.opts = "ro"
    m.restart()
    assert read_file(m.p("d/k")) == b"v\n"
    assert write_file(m.p("d/k"), "x") == errno.EROFS
    assert write_file(m.p("new"), "x") == errno.EROFS
    r = m.sh("mkdir e", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert read_file(m.p("d/k")) == b"v\n"


def test_consistency_option(members):
    m = members.start("n1", opts="consistency=serializable")
    assert m.status()["consistency"] == "serializable"
    m.sh("echo v > k")
    assert read_file(m.p("k")) == b"v\n"


def test_only_the_mounting_user_without_allow_other(members, tmp_path):
    m = members.start("n1")
    m.sh("echo v > k && chmod 644 k")
    assert m.sh(f"{AS_NOBODY} id -u").stdout.strip() == "65534"
    r = m.sh(f"{AS_NOBODY} cat k", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_allow_other_and_mode_bits(members):
    m = members.start("n1", opts="allow_other")
    m.sh("echo v > pub && chmod 644 pub && echo s > secret && chmod 600 secret "
         "&& mkdir open && chmod 777 open")
    assert m.sh(f"{AS_NOBODY} cat pub").stdout == "v\n"
    r = m.sh(f"{AS_NOBODY} cat secret", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = m.sh(f"{AS_NOBODY} bash -c 'echo x > pub'", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = m.sh(f"{AS_NOBODY} bash -c 'echo x > new'", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert read_file(m.p("pub")) == b"v\n"
    assert not os.path.exists(m.p("new"))
    # Where the mode bits allow it, the other user writes, and owns what it creates.
    m.sh(f"{AS_NOBODY} bash -c 'echo mine > open/f'")
    st = os.stat(m.p("open/f"))
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert read_file(m.p("open/f")) == b"mine\n"
