"""Files are values: shell writes and reads, one revision per close (SPEC §3.2)."""
import os
from concurrent.futures import ThreadPoolExecutor

from qfs import read_file, sh, write_file


def test_echo_cat_one_revision_per_echo(member):
    r0 = member.revision()
    member.sh("echo hello > greeting")
    r1 = member.revision()
    assert r1 == r0 + 1, "a new key by echo is exactly one revision"
    assert member.sh("cat greeting").stdout == "hello\n"
    assert member.revision("greeting") == r1

    member.sh("echo world > greeting")
    r2 = member.revision()
    assert r2 == r1 + 1, "overwriting an existing key by echo is exactly one revision"
    assert member.sh("cat greeting").stdout == "world\n"
    assert member.revision("greeting") == r2
    assert os.stat(member.p("greeting")).st_size == 6


def test_append(member):
    member.sh("echo one > log")
    r = member.revision()
    member.sh("echo two >> log")
    assert member.revision() == r + 1
    member.sh("printf three >> log")
    assert member.revision() == r + 2
    assert read_file(member.p("log")) == b"one\ntwo\nthree"


def test_append_python_o_append(member):
    f = member.p("a")
    assert write_file(f, "0123") is None
    assert write_file(f, "45", os.O_WRONLY | os.O_APPEND) is None
    assert write_file(f, "67", os.O_WRONLY | os.O_APPEND) is None
    assert read_file(f) == b"01234567"


def test_pwrite_middle_is_one_revision_and_invisible_until_close(member):
    f = member.p("value")
    assert write_file(f, "abcdefghij") is None
    r = member.revision()
    fd = os.open(f, os.O_RDWR)
    try:
        assert os.pwrite(fd, b"XY", 3) == 2
        assert os.pwrite(fd, b"Z", 8) == 1
        # Another reader sees the committed value, never a partial one.
        assert read_file(f) == b"abcdefghij"
        assert member.revision() == r
    finally:
        os.close(fd)
    assert read_file(f) == b"abcXYfghZj"
    assert member.revision() == r + 1


def test_truncate_path_and_ftruncate(member):
    f = member.p("t")
    assert write_file(f, "0123456789") is None
    os.truncate(f, 4)
    assert read_file(f) == b"0123"
    assert os.stat(f).st_size == 4

    # ftruncate + write on one open file: one revision when it is closed.
    r = member.revision()
    fd = os.open(f, os.O_RDWR)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, b"new")
        os.ftruncate(fd, 8)
    finally:
        os.close(fd)
    assert read_file(f) == b"new" + b"\0" * 5
    assert member.revision() == r + 1

    member.sh("truncate -s 0 t")
    assert read_file(f) == b""
    assert os.stat(f).st_size == 0


def test_o_trunc_rewrite_has_no_empty_intermediate_revision(member):
    member.sh("echo first > k")
    r = member.revision()
    member.sh("echo second > k")
    assert member.revision() == r + 1
    # The revision before the rewrite holds the old value, the next one the
    # new: no empty value was committed in between.
    assert read_file(member.p(f".quorumfs/rev/{r}/k")) == b"first\n"
    assert read_file(member.p(f".quorumfs/rev/{r + 1}/k")) == b"second\n"


def test_sed_in_place(member):
    member.sh("mkdir etc && printf 'port=80\\nhost=a\\n' > etc/app.conf")
    member.sh("sed -i 's/port=80/port=8080/' etc/app.conf")
    assert read_file(member.p("etc/app.conf")) == b"port=8080\nhost=a\n"
    assert sorted(os.listdir(member.p("etc"))) == ["app.conf"], "sed left its temp file behind"


def test_cp_r_in_and_out(member, tmp_path):
    src = tmp_path / "src"
    sh(f"mkdir -p {src}/a/b {src}/c && echo x > {src}/a/b/f && printf '' > {src}/empty"
       f" && head -c 100000 /dev/urandom > {src}/c/blob && echo y > {src}/a/g")
    member.sh(f"cp -r {src} copy")
    sh(f"diff -r {src} {member.p('copy')}")
    out = tmp_path / "out"
    sh(f"cp -r {member.p('copy')} {out}")
    sh(f"diff -r {src} {out}")


def test_find_lists_tree_in_key_order(member):
    member.sh("mkdir -p d/b/y d/a && echo > d/c && echo > d/b/x && echo > d/a/z "
              "&& echo > d/b/y/w && echo > d/B")
    out = member.sh("find d").stdout.splitlines()
    assert out == ["d", "d/B", "d/a", "d/a/z", "d/b", "d/b/x", "d/b/y", "d/b/y/w", "d/c"]
    assert member.sh("find d -type f | sort").stdout.split() == \
        ["d/B", "d/a/z", "d/b/x", "d/b/y/w", "d/c"]


def test_ls_large_directory(member):
    member.sh("mkdir big")
    names = [f"k{i:05d}" for i in range(2000)]

    def put(n):
        return write_file(member.p(f"big/{n}"), n)

    with ThreadPoolExecutor(16) as pool:
        errs = list(pool.map(put, names))
    assert errs == [None] * len(names)
    assert member.sh("ls big").stdout.split() == names
    assert member.sh("ls -f big | grep -c '^k'").stdout.strip() == "2000"
    assert sorted(os.listdir(member.p("big"))) == names
    assert read_file(member.p("big/k01999")) == b"k01999"


def test_empty_file_and_touch_create(member):
    r = member.revision()
    member.sh(": > empty")
    assert member.revision() == r + 1, "creating an empty key is one revision"
    assert os.stat(member.p("empty")).st_size == 0
    assert read_file(member.p("empty")) == b""
    member.sh("touch touched")
    assert member.revision() > r + 1
    assert os.path.isfile(member.p("touched"))
    assert read_file(member.p("touched")) == b""


def test_binary_value_roundtrip(member):
    data = bytes(range(256)) * 1000
    assert write_file(member.p("bin"), data) is None
    assert read_file(member.p("bin")) == data
    assert os.stat(member.p("bin")).st_size == len(data)


def test_page_cache_follows_renames_and_exchanges(member):
    """Values cached by the kernel are dropped when a rename changes what a name holds
    (same sizes, so a size check alone cannot notice)."""
    from qfs import RENAME_EXCHANGE, renameat2
    member.sh("echo AAAA > a && echo BBBB > b && echo CCCC > c")
    for _ in range(2):  # read twice: the second read is served from the cache
        assert member.sh("cat a b c").stdout == "AAAA\nBBBB\nCCCC\n"
    renameat2(member.p("a"), member.p("b"), RENAME_EXCHANGE)
    assert member.sh("cat a b").stdout == "BBBB\nAAAA\n"
    member.sh("mv c a")
    assert member.sh("cat a").stdout == "CCCC\n"
    member.sh("echo DDDD > a")
    assert member.sh("cat a").stdout == "DDDD\n"


def test_open_file_reads_stable_snapshot(member):
    """SPEC §3.3: open() takes a read point; that file then reads a stable value."""
    member.sh("echo CCCC > a")
    fd = os.open(member.p("a"), os.O_RDONLY)
    try:
        assert os.pread(fd, 2, 0) == b"CC"
        member.sh("echo DDDD > a")
        assert member.sh("cat a").stdout == "DDDD\n", "new opens see the new value"
        assert os.pread(fd, 100, 0) == b"CCCC\n", "the earlier open still reads its snapshot"
    finally:
        os.close(fd)


def test_one_mib_value_roundtrip(member):
    data = os.urandom(1 << 20)
    assert write_file(member.p("max"), data) is None
    assert read_file(member.p("max")) == data
    member.sh("cp max copy")
    assert read_file(member.p("copy")) == data


def test_fsync_commits_and_close_after_it_adds_nothing(member):
    f = member.p("synced")
    assert write_file(f, "v0") is None
    r = member.revision()
    fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"v1")
        os.fsync(fd)
        assert member.revision() == r + 1, "fsync commits one revision"
        assert read_file(f) == b"v1"
        os.write(fd, b"+more")
        os.fsync(fd)
        assert member.revision() == r + 2
    finally:
        os.close(fd)
    assert member.revision() == r + 2, "close with nothing new since fsync adds no revision"
    assert read_file(f) == b"v1+more"


def test_close_without_write_commits_before_returning(member):
    """open(O_CREAT)+close() and open(O_TRUNC)+close() with nothing written are one
    revision each, committed when close() returns (not later, at FUSE release)."""
    late = []
    for i in range(20):
        assert write_file(member.p(f"t{i}"), "old") is None
        for what, name, flags in (("truncate", f"t{i}", os.O_WRONLY | os.O_TRUNC),
                                  ("create", f"c{i}", os.O_WRONLY | os.O_CREAT)):
            r = member.revision()
            os.close(os.open(member.p(name), flags, 0o644))
            after = member.revision()
            if after != r + 1 or read_file(member.p(name)) != b"":
                late.append((what, i, r, after))
    assert not late, f"{len(late)} of 40 empty writes not committed at close(): {late[:4]}"


def test_open_read_only_close_adds_no_revision(member):
    member.sh("echo v > k")
    r = member.revision()
    for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        os.close(os.open(member.p("k"), flags))
    member.sh("cat k > /dev/null")
    assert member.revision() == r
