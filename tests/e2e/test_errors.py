"""The errors of SPEC §3.8 as the shell sees them, and nothing left behind."""
import errno
import os
import stat
import time

from qfs import errname, errno_of, read_file, write_file

MIB = 1 << 20


def test_efbig_for_2mib_value_leaves_nothing(member):
    r = member.revision()
    res = member.sh("head -c 2M /dev/zero > big", check=False)
    assert res.returncode != 0, "a 2 MiB value must be refused"
    assert "File too large" in res.stderr, res.stderr
    assert not os.path.exists(member.p("big")), "the refused key was left behind"
    assert member.revision() == r, "a refused write must not commit anything"


def test_efbig_python_and_old_value_kept(member):
    member.sh("echo keep > k")
    r = member.revision()
    assert write_file(member.p("k"), b"x" * (2 * MIB)) == errno.EFBIG
    assert read_file(member.p("k")) == b"keep\n"
    assert member.revision() == r
    # Exactly the limit is fine (default --max-value-bytes is 1 MiB).
    assert write_file(member.p("k"), b"y" * MIB) is None
    assert os.stat(member.p("k")).st_size == MIB


def test_max_value_bytes_flag(members):
    m = members.start("n1", "--max-value-bytes", "1000")
    assert write_file(m.p("ok"), b"a" * 1000) is None
    assert write_file(m.p("no"), b"a" * 1001) == errno.EFBIG
    assert not os.path.exists(m.p("no"))


def test_enametoolong(member):
    long_name = "n" * 256
    assert write_file(member.p(long_name), "x") == errno.ENAMETOOLONG
    assert errno_of(os.mkdir, member.p(long_name)) == errno.ENAMETOOLONG
    r = member.sh(f"echo x > {long_name}", check=False)
    assert r.returncode != 0 and "File name too long" in r.stderr
    # 255 bytes is a valid name.
    ok = "n" * 255
    assert write_file(member.p(ok), "x") is None
    assert read_file(member.p(ok)) == b"x"
    assert os.listdir(member.p()).count(ok) == 1


def test_enotempty(member):
    member.sh("mkdir -p d/sub && echo x > d/f")
    assert errno_of(os.rmdir, member.p("d")) == errno.ENOTEMPTY
    r = member.sh("rmdir d", check=False)
    assert r.returncode != 0 and "not empty" in r.stderr
    assert read_file(member.p("d/f")) == b"x\n"
    assert errno_of(os.rmdir, member.p("d/f")) == errno.ENOTDIR


def test_eexist_noclobber(member):
    member.sh("set -o noclobber; echo first > lock")
    r0 = member.revision()
    r = member.sh("set -o noclobber; echo second > lock", check=False)
    assert r.returncode != 0 and "cannot overwrite existing file" in r.stderr
    assert read_file(member.p("lock")) == b"first\n"
    assert member.revision() == r0


def test_eexist_o_excl(member):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    assert write_file(member.p("x"), "1", flags) is None
    assert write_file(member.p("x"), "2", flags) == errno.EEXIST
    assert read_file(member.p("x")) == b"1"


def test_eexist_mkdir_twice(member):
    member.sh("mkdir lockdir")
    r = member.revision()
    assert errno_of(os.mkdir, member.p("lockdir")) == errno.EEXIST
    res = member.sh("mkdir lockdir", check=False)
    assert res.returncode != 0 and "File exists" in res.stderr
    assert member.revision() == r
    member.sh("echo v > file")
    assert errno_of(os.mkdir, member.p("file")) == errno.EEXIST


def test_hard_link_eperm(member):
    member.sh("echo v > k")
    assert errno_of(os.link, member.p("k"), member.p("k2")) == errno.EPERM
    assert not os.path.exists(member.p("k2"))
    r = member.sh("ln k k3", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


def test_mknod_eperm(member):
    assert errno_of(os.mkfifo, member.p("fifo")) == errno.EPERM
    assert errno_of(os.mknod, member.p("dev"), stat.S_IFCHR | 0o600, os.makedev(1, 3)) \
        == errno.EPERM
    assert errno_of(os.mknod, member.p("blk"), stat.S_IFBLK | 0o600, os.makedev(7, 0)) \
        == errno.EPERM
    for n in ("fifo", "dev", "blk"):
        assert not os.path.lexists(member.p(n))


def test_control_dir_is_read_only(member):
    e = write_file(member.p(".quorumfs/new"), "x")
    assert e in (errno.EPERM, errno.EACCES), errname(e)
    e = write_file(member.p(".quorumfs/status"), "x")
    assert e in (errno.EPERM, errno.EACCES), errname(e)
    assert errno_of(os.mkdir, member.p(".quorumfs/d")) in (errno.EPERM, errno.EACCES)
    assert errno_of(os.unlink, member.p(".quorumfs/status")) in (errno.EPERM, errno.EACCES)
    assert errno_of(os.rename, member.p(".quorumfs"), member.p("x")) in \
        (errno.EPERM, errno.EACCES, errno.EBUSY)
    member.sh("echo v > k")
    assert errno_of(os.rename, member.p("k"), member.p(".quorumfs/k")) in \
        (errno.EPERM, errno.EACCES, errno.EXDEV)
    assert read_file(member.p("k")) == b"v\n"
    assert member.status()["name"] == "n1"


def test_quota_enospc_reads_and_deletes_keep_working(members):
    quota = MIB
    m = members.start("n1", "--quota-bytes", str(quota))
    blob = b"q" * (32 << 10)
    written, err = [], None
    for i in range(200):  # 6.4 MB: far over the quota
        err = write_file(m.p(f"f{i}"), blob)
        if err is not None:
            break
        written.append(f"f{i}")
    assert err == errno.ENOSPC, f"expected ENOSPC within 200 x 32 KiB, got {errname(err)}"
    assert written, "the first 32 KiB already failed: quota is not 1 MiB"
    r = m.sh("head -c 32K /dev/zero > more; ls more 2>/dev/null", check=False)
    assert "No space left on device" in r.stderr
    seen_right_after = r.stdout.strip() == "more"
    time.sleep(0.5)
    assert not os.path.exists(m.p("more")), "a refused write left its key behind"
    assert not seen_right_after, \
        "close() failed with ENOSPC but the file was still there right after it"
    assert not os.path.exists(m.p(f"f{len(written)}")), "a refused write left a key"
    # Reads and deletes keep working.
    assert read_file(m.p(written[0])) == blob
    assert m.sh(f"cat {written[-1]} | wc -c").stdout.strip() == str(len(blob))
    m.sh(f"rm {' '.join(written[: len(written) // 2])}")
    assert not os.path.exists(m.p(written[0]))


def test_statfs_reflects_quota(members):
    quota = 64 * MIB
    m = members.start("n1", "--quota-bytes", str(quota))
    st = os.statvfs(m.p())
    total = st.f_blocks * st.f_frsize
    assert abs(total - quota) <= max(st.f_frsize, 4096), (total, quota)
    free0 = st.f_bavail * st.f_frsize
    assert 0 < free0 <= quota
    for i in range(4):
        assert write_file(m.p(f"v{i}"), b"z" * (512 << 10)) is None
    free1 = os.statvfs(m.p()).f_bavail * st.f_frsize
    assert free1 <= free0 - (2 * MIB) + max(st.f_frsize, 4096), (free0, free1)
    assert st.f_namemax == 255


def test_racing_creators_exactly_one_wins(member):
    """O_EXCL and mkdir are the shell's lock: one winner, everyone else EEXIST."""
    from concurrent.futures import ThreadPoolExecutor
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for round_ in range(20):
        with ThreadPoolExecutor(16) as pool:
            files = list(pool.map(lambda i: write_file(member.p(f"lock{round_}"), str(i), flags),
                                  range(16)))
            dirs = list(pool.map(lambda i: errno_of(os.mkdir, member.p(f"dlock{round_}")),
                                 range(16)))
        assert files.count(None) == 1 and files.count(errno.EEXIST) == 15, files
        assert dirs.count(None) == 1 and dirs.count(errno.EEXIST) == 15, dirs
        # The winner's close() returned: its value is what everyone reads now.
        winner = str(files.index(None)).encode()
        assert read_file(member.p(f"lock{round_}")) == winner, f"round {round_}"
