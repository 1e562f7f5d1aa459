"""Metadata: the user.quorumfs.* xattrs (SPEC §3.4), user xattrs, mode, owner,
times and inode numbers (SPEC §3.1)."""
import calendar
import errno
import os
import stat

from qfs import errno_of, read_file, xattr_int


def getfattr_dump(path):
    """{name: value} from `getfattr -d -m - --absolute-names PATH`."""
    from qfs import sh
    out = sh(f"getfattr -d -m - --absolute-names '{path}'").stdout
    attrs = {}
    for line in out.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            attrs[k] = v.strip('"')
    return attrs


def test_revision_xattrs_follow_etcd(member):
    member.sh("echo 1 > k")
    created = member.revision()
    f = member.p("k")
    assert xattr_int(f, "user.quorumfs.create_revision") == created
    assert xattr_int(f, "user.quorumfs.revision") == created
    assert xattr_int(f, "user.quorumfs.version") == 1
    member.sh("echo 2 > other")
    member.sh("echo 3 > k")
    now = member.revision()
    assert xattr_int(f, "user.quorumfs.create_revision") == created
    assert xattr_int(f, "user.quorumfs.revision") == now
    assert xattr_int(f, "user.quorumfs.version") == 2
    out = member.sh("getfattr -n user.quorumfs.revision --only-values .").stdout
    assert int(out.strip().rstrip("\0")) == now


def test_getfattr_dump_shows_metadata(member):
    member.sh("echo v > k")
    attrs = getfattr_dump(member.p("k"))
    for name in ("user.quorumfs.revision", "user.quorumfs.create_revision",
                 "user.quorumfs.version"):
        assert name in attrs, f"{name} missing from getfattr -d: {attrs}"
    assert int(attrs["user.quorumfs.version"]) == 1


def test_user_xattrs_stored_and_removed(member):
    member.sh("echo v > k")
    member.sh("setfattr -n user.color -v blue k && setfattr -n user.owner -v team-a k")
    assert member.sh("getfattr -n user.color --only-values k").stdout == "blue"
    assert os.getxattr(member.p("k"), "user.owner") == b"team-a"
    attrs = getfattr_dump(member.p("k"))
    assert attrs.get("user.color") == "blue" and attrs.get("user.owner") == "team-a"
    assert {"user.color", "user.owner"} <= set(os.listxattr(member.p("k")))
    assert read_file(member.p("k")) == b"v\n", "xattrs do not touch the value"

    member.sh("setfattr -x user.color k")
    assert errno_of(os.getxattr, member.p("k"), "user.color") == errno.ENODATA
    assert "user.color" not in os.listxattr(member.p("k"))
    assert os.getxattr(member.p("k"), "user.owner") == b"team-a"
    r = member.sh("getfattr -n user.color k", check=False)
    assert r.returncode != 0 and "No such attribute" in r.stderr


def test_user_xattr_binary_value_and_on_directory(member):
    member.sh("mkdir d")
    os.setxattr(member.p("d"), "user.blob", b"\0\1\2\xff")
    assert os.getxattr(member.p("d"), "user.blob") == b"\0\1\2\xff"


def test_unknown_xattr_enodata(member):
    member.sh("echo v > k")
    assert errno_of(os.getxattr, member.p("k"), "user.never.set") == errno.ENODATA
    assert errno_of(os.getxattr, member.p(), "user.never.set") == errno.ENODATA
    assert errno_of(os.removexattr, member.p("k"), "user.never.set") == errno.ENODATA


def test_metadata_xattrs_are_read_only(member):
    member.sh("echo v > k")
    assert errno_of(os.setxattr, member.p("k"), "user.quorumfs.revision", b"1") in \
        (errno.EPERM, errno.EACCES, errno.EINVAL, errno.ENOTSUP)
    assert xattr_int(member.p("k"), "user.quorumfs.version") == 1


def test_chmod_chown_touch_visible_in_stat(member):
    member.sh("echo v > k && mkdir d")
    member.sh("chmod 640 k && chmod 750 d")
    assert stat.S_IMODE(os.stat(member.p("k")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(member.p("d")).st_mode) == 0o750
    assert stat.S_ISREG(os.stat(member.p("k")).st_mode)
    member.sh("chown 1234:5678 k")
    st = os.stat(member.p("k"))
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    member.sh("touch -d '2001-02-03 04:05:06 UTC' k")
    want = calendar.timegm((2001, 2, 3, 4, 5, 6))
    assert int(os.stat(member.p("k")).st_mtime) == want
    assert read_file(member.p("k")) == b"v\n"


def test_mtime_is_commit_time(member):
    import time
    t0 = time.time()
    member.sh("echo v > k")
    t1 = time.time()
    mtime = os.stat(member.p("k")).st_mtime
    assert t0 - 1 <= mtime <= t1 + 1


def test_inode_is_create_revision(member):
    member.sh("echo v > k && mkdir d")
    for name in ("k", "d"):
        st = os.stat(member.p(name))
        assert st.st_ino >> 16 == xattr_int(member.p(name), "user.quorumfs.create_revision")
    member.sh("echo w > k")
    assert os.stat(member.p("k")).st_ino >> 16 == \
        xattr_int(member.p("k"), "user.quorumfs.create_revision"), "overwrite keeps the inode"


def test_metadata_survives_restart(members):
    m = members.start("n1")
    m.sh("echo v > k && chmod 604 k && chown 7:8 k && setfattr -n user.tag -v keep k "
         "&& touch -d '2010-01-01 00:00:00 UTC' k && ln -s k link")
    before = os.stat(m.p("k"))
    m.stop()
    m.restart()
    st = os.stat(m.p("k"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o604, 7, 8)
    assert int(st.st_mtime) == calendar.timegm((2010, 1, 1, 0, 0, 0))
    assert st.st_ino == before.st_ino
    assert os.getxattr(m.p("k"), "user.tag") == b"keep"
    assert os.readlink(m.p("link")) == "k"
