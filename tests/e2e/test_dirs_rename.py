"""Directories, rename (plain, subtree, NOREPLACE, EXCHANGE), rm, symlinks (SPEC §3.2)."""
import errno
import os
import stat

from qfs import (RENAME_EXCHANGE, RENAME_NOREPLACE, errno_of, read_file, renameat2,
                 write_file)


def inodes(root):
    """{relative path: st_ino} of everything under root (root itself as '.')."""
    out = {".": os.lstat(root).st_ino}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = os.lstat(p).st_ino
    return out


def user_entries(member):
    """The root listing without the control directory."""
    return sorted(n for n in os.listdir(member.p()) if n != ".quorumfs")


def test_mkdir_rmdir(member):
    r = member.revision()
    member.sh("mkdir conf")
    assert member.revision() == r + 1
    assert stat.S_ISDIR(os.stat(member.p("conf")).st_mode)
    member.sh("rmdir conf")
    assert member.revision() == r + 2
    assert not os.path.exists(member.p("conf"))


def test_mv_file_one_revision_keeps_inode(member):
    member.sh("echo v > a")
    ino = os.stat(member.p("a")).st_ino
    r = member.revision()
    member.sh("mv a b")
    assert member.revision() == r + 1
    assert not os.path.exists(member.p("a"))
    assert read_file(member.p("b")) == b"v\n"
    assert os.stat(member.p("b")).st_ino == ino


def test_mv_over_existing_file_replaces_it(member):
    member.sh("echo new > src && echo old > dst")
    ino = os.stat(member.p("src")).st_ino
    r = member.revision()
    member.sh("mv src dst")
    assert member.revision() == r + 1
    assert read_file(member.p("dst")) == b"new\n"
    assert os.stat(member.p("dst")).st_ino == ino
    assert user_entries(member) == ["dst"]


def test_rename_subtree_is_one_revision_and_keeps_inodes(member):
    member.sh("mkdir -p app/conf/deep && echo 1 > app/a && echo 2 > app/conf/b "
              "&& echo 3 > app/conf/deep/c && ln -s ../a app/conf/link")
    before = inodes(member.p("app"))
    r = member.revision()
    member.sh("mv app moved")
    assert member.revision() == r + 1, "a subtree rename is one revision"
    assert not os.path.exists(member.p("app"))
    assert inodes(member.p("moved")) == before
    assert read_file(member.p("moved/conf/deep/c")) == b"3\n"
    assert os.readlink(member.p("moved/conf/link")) == "../a"
    assert read_file(member.p("moved/conf/link")) == b"1\n"
    # Into another directory, one level down.
    member.sh("mkdir parent")
    r = member.revision()
    member.sh("mv moved parent/")
    assert member.revision() == r + 1
    assert inodes(member.p("parent/moved")) == before


def test_mv_T_over_empty_dir(member):
    member.sh("mkdir -p src/sub empty && echo x > src/sub/f")
    before = inodes(member.p("src"))
    r = member.revision()
    member.sh("mv -T src empty")
    assert member.revision() == r + 1, "replacing an empty dir by a subtree is one revision"
    assert not os.path.exists(member.p("src"))
    assert read_file(member.p("empty/sub/f")) == b"x\n"
    assert inodes(member.p("empty")) == before


def test_rename_dir_over_nonempty_dir_fails(member):
    member.sh("mkdir -p s t && echo x > t/keep && echo y > s/f")
    assert errno_of(os.rename, member.p("s"), member.p("t")) in (errno.ENOTEMPTY, errno.EEXIST)
    assert read_file(member.p("t/keep")) == b"x\n"
    assert read_file(member.p("s/f")) == b"y\n"


def test_rename_noreplace(member):
    member.sh("echo a > a && echo b > b")
    r = member.revision()
    assert errno_of(renameat2, member.p("a"), member.p("b"), RENAME_NOREPLACE) == errno.EEXIST
    assert read_file(member.p("a")) == b"a\n" and read_file(member.p("b")) == b"b\n"
    assert member.revision() == r
    renameat2(member.p("a"), member.p("c"), RENAME_NOREPLACE)
    assert member.revision() == r + 1
    assert not os.path.exists(member.p("a"))
    assert read_file(member.p("c")) == b"a\n"


def test_rename_exchange(member):
    member.sh("echo a > a && mkdir d && echo in > d/f")
    ino_a, ino_d = os.stat(member.p("a")).st_ino, os.stat(member.p("d")).st_ino
    r = member.revision()
    renameat2(member.p("a"), member.p("d"), RENAME_EXCHANGE)
    assert member.revision() == r + 1, "an exchange is one revision"
    assert read_file(member.p("d")) == b"a\n"
    assert read_file(member.p("a/f")) == b"in\n"
    assert os.stat(member.p("d")).st_ino == ino_a
    assert os.stat(member.p("a")).st_ino == ino_d
    assert errno_of(renameat2, member.p("a"), member.p("missing"), RENAME_EXCHANGE) \
        == errno.ENOENT


def test_rm_r(member):
    member.sh("mkdir -p t/a/b t/c && echo 1 > t/a/b/f && echo 2 > t/c/g && ln -s x t/l")
    member.sh("rm -r t")
    assert not os.path.exists(member.p("t"))
    assert user_entries(member) == []


def test_rm_file(member):
    member.sh("echo v > f")
    r = member.revision()
    member.sh("rm f")
    assert member.revision() == r + 1
    assert errno_of(os.stat, member.p("f")) == errno.ENOENT


def test_symlink(member):
    member.sh("mkdir d && echo target > d/t && ln -s d/t link && ln -s /nowhere dangling")
    st = os.lstat(member.p("link"))
    assert stat.S_ISLNK(st.st_mode)
    assert member.sh("readlink link").stdout == "d/t\n"
    assert member.sh("cat link").stdout == "target\n"
    assert os.readlink(member.p("dangling")) == "/nowhere"
    assert errno_of(os.stat, member.p("dangling")) == errno.ENOENT
    member.sh("rm link")
    assert read_file(member.p("d/t")) == b"target\n", "rm of a link removes the link only"


def test_recreated_key_gets_new_inode(member):
    member.sh("echo 1 > k")
    ino = os.stat(member.p("k")).st_ino
    member.sh("rm k && echo 2 > k")
    assert os.stat(member.p("k")).st_ino != ino


def test_create_in_missing_dir_fails(member):
    assert write_file(member.p("nodir/f"), "x") == errno.ENOENT
    assert errno_of(os.mkdir, member.p("nodir/sub")) == errno.ENOENT
