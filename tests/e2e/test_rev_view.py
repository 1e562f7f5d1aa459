"""The control directory: /.quorumfs/status and the read-only /.quorumfs/rev/N/ view
(SPEC §3.7)."""
import errno
import json
import os

from qfs import errno_of, read_file, wait_until, write_file


def test_status_is_json_with_name_role_revision(member):
    member.sh("echo v > k")
    st = json.loads(member.sh("cat .quorumfs/status").stdout)
    assert st["name"] == "n1"
    assert st["role"] in ("leader", "follower", "learner")
    assert st["role"] == "leader", "a single member leads itself"
    assert int(st["revision"]) == member.revision()
    member.sh("echo w > k")
    assert int(member.status()["revision"]) == member.revision()


def test_rev_view_shows_old_values(member):
    member.sh("mkdir conf && echo v1 > conf/app")
    r1 = member.revision()
    member.sh("echo v2 > conf/app && echo new > conf/added")
    r2 = member.revision()
    assert read_file(member.p(f".quorumfs/rev/{r1}/conf/app")) == b"v1\n"
    assert read_file(member.p(f".quorumfs/rev/{r2}/conf/app")) == b"v2\n"
    assert not os.path.exists(member.p(f".quorumfs/rev/{r1}/conf/added"))
    assert sorted(os.listdir(member.p(f".quorumfs/rev/{r1}/conf"))) == ["app"]
    assert sorted(os.listdir(member.p(f".quorumfs/rev/{r2}/conf"))) == ["added", "app"]
    assert read_file(member.p("conf/app")) == b"v2\n"


def test_rev_view_shows_deleted_key(member):
    member.sh("echo gone > doomed")
    r = member.revision()
    member.sh("rm doomed")
    assert not os.path.exists(member.p("doomed"))
    assert member.sh(f"cat .quorumfs/rev/{r}/doomed").stdout == "gone\n"


def test_diff_r_against_old_revision(member):
    member.sh("mkdir -p cfg/sub && echo a > cfg/a && echo b > cfg/sub/b")
    r = member.revision()
    same = member.sh(f"diff -r .quorumfs/rev/{r}/cfg cfg", check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    member.sh("echo B > cfg/sub/b && echo c > cfg/c")
    d = member.sh(f"diff -r .quorumfs/rev/{r}/cfg cfg", check=False)
    assert d.returncode == 1, d.stderr
    assert "< b" in d.stdout and "> B" in d.stdout
    assert "Only in cfg: c" in d.stdout


def test_rev_view_is_read_only(member):
    member.sh("echo v > k")
    r = member.revision()
    base = member.p(f".quorumfs/rev/{r}")
    assert write_file(base / "k", "x") in (errno.EPERM, errno.EACCES, errno.EROFS)
    assert write_file(base / "new", "x") in (errno.EPERM, errno.EACCES, errno.EROFS)
    assert errno_of(os.unlink, base / "k") in (errno.EPERM, errno.EACCES, errno.EROFS)
    assert read_file(member.p("k")) == b"v\n"
    assert member.revision() == r


def test_future_revision_enoent(member):
    r = member.revision()
    assert errno_of(os.stat, member.p(f".quorumfs/rev/{r + 1000}")) == errno.ENOENT
    assert errno_of(os.listdir, member.p(f".quorumfs/rev/{r + 1000}")) == errno.ENOENT
    assert errno_of(os.stat, member.p(".quorumfs/rev/notanumber")) == errno.ENOENT
    assert os.path.isdir(member.p(f".quorumfs/rev/{r}"))


def test_compacted_revision_enoent(members):
    m = members.start("n1", "--auto-compact-revisions", "5")
    m.sh("echo first > k")
    early = m.revision()
    for i in range(30):
        assert write_file(m.p("k"), str(i)) is None
    assert wait_until(lambda: errno_of(os.stat, m.p(f".quorumfs/rev/{early}")) == errno.ENOENT,
                      10), f"revision {early} still readable after 30 more revisions"
    now = m.revision()
    assert read_file(m.p(f".quorumfs/rev/{now}/k")) == b"29"
