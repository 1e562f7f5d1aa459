"""inotify for changes made anywhere (SPEC §3.6; issue 4 deliverables 1 and 6):
`inotifywait -m -r` on any member or learner reports each change committed
through another member, through the CLI, or by the lease keeper, exactly once
and as a local change would; a change made through a member's own mount is
reported there once, not once by the kernel and again by the replay.

The tests run `inotifywait` itself (the tool the spec names) on every mount
at once and compare what each one printed, step by step, with what the
change must produce. Directories are created before the watch starts (or in
an earlier step) because `inotifywait -r` only sees events inside
directories it already watches: that race is inotify's own."""
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cluster import cluster, tree  # noqa: F401  (cluster is a fixture)
from qfs import read_file, wait_until, write_file

# What a test watches for: everything a change produces, none of the
# OPEN/ACCESS/CLOSE_NOWRITE that reading (ours, or inotifywait's own listing
# of a new directory) produces.
CHANGE_EVENTS = ("create", "modify", "close_write", "delete", "delete_self", "moved_from",
                 "moved_to", "move_self", "attrib")
STEP_TIMEOUT = 5.0
QUIET = 1.0  # seconds without events that make a late duplicate unlikely to be missed


def _norm_event(ev):
    """inotifywait's "CLOSE_WRITE,CLOSE" -> "CLOSE_WRITE" (CLOSE is the union flag)."""
    parts = [p for p in ev.split(",") if p != "CLOSE"]
    return ",".join(parts)


class Watcher:
    """`inotifywait -m -r` on one mount (without /.quorumfs), its events as
    (monotonic time of arrival, "EVENT[,ISDIR]", path relative to the mount)."""

    def __init__(self, root, events=CHANGE_EVENTS, name=None):
        self.root = str(root).rstrip("/")
        self.name = name or self.root
        cmd = ["inotifywait", "-m", "-r", "--format", "%e %w%f",
               "--exclude", r"/\.quorumfs(/|$)"]
        for e in events or ():
            cmd += ["-e", e]
        cmd.append(self.root)
        # stdbuf: the events must reach us when they happen, not when a pipe buffer fills.
        self.proc = subprocess.Popen(["stdbuf", "-oL", *cmd], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        self.events = []
        self.stderr = []
        self._cv = threading.Condition()
        established = threading.Event()

        def read_err():
            for line in self.proc.stderr:
                self.stderr.append(line.rstrip("\n"))
                if "Watches established" in line:
                    established.set()
            established.set()

        def read_out():
            for line in self.proc.stdout:
                t = time.monotonic()
                ev, _, path = line.rstrip("\n").partition(" ")
                if path.startswith(self.root + "/"):
                    path = path[len(self.root) + 1:]
                elif path == self.root:
                    path = ""
                with self._cv:
                    self.events.append((t, _norm_event(ev), path.rstrip("/")))
                    self._cv.notify_all()

        self._threads = [threading.Thread(target=read_err, daemon=True),
                         threading.Thread(target=read_out, daemon=True)]
        for th in self._threads:
            th.start()
        if not established.wait(10) or self.proc.poll() is not None:
            self.close()
            raise AssertionError(f"inotifywait on {self.root} did not start: {self.stderr}")

    def mark(self):
        with self._cv:
            return len(self.events)

    def since(self, mark=0):
        """[(event, path)] from mark on."""
        with self._cv:
            return [(e, p) for _, e, p in self.events[mark:]]

    def wait_for(self, pred, timeout=STEP_TIMEOUT):
        """Waits until pred(self) is true; returns it."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                v = pred(self)
                left = deadline - time.monotonic()
                if v or left <= 0:
                    return v
                self._cv.wait(min(left, 0.1))

    def settle(self, quiet=0.3, timeout=STEP_TIMEOUT):
        """Waits until no event arrived for `quiet` seconds: the end of a
        step whose events cannot be listed exactly in advance."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while time.monotonic() < deadline:
                last = self.events[-1][0] if self.events else 0
                left = last + quiet - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(left)

    def _watched_inodes(self):
        """Inode numbers inotifywait watches, from its inotify fd's fdinfo."""
        out = set()
        fds = Path(f"/proc/{self.proc.pid}/fd")
        try:
            for fd in fds.iterdir():
                if os.readlink(fd) != "anon_inode:inotify":
                    continue
                for line in (Path(f"/proc/{self.proc.pid}/fdinfo") / fd.name).read_text() \
                        .splitlines():
                    f = dict(kv.split(":", 1) for kv in line.split()[1:] if ":" in kv)
                    if line.startswith("inotify") and "ino" in f:
                        out.add(int(f["ino"], 16))
        except OSError:
            pass
        return out

    def wait_watching(self, rel, timeout=STEP_TIMEOUT):
        """inotifywait -r prints a new directory's CREATE before it adds a
        watch on it: waits for that watch (events inside come only after)."""
        ino = os.stat(os.path.join(self.root, rel)).st_ino
        assert wait_until(lambda: ino in self._watched_inodes(), timeout), \
            f"inotifywait on {self.name} does not watch {rel} (inode {ino})"

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for th in self._threads:
            th.join(5)


class Watchers:
    """One Watcher per member name; closes them all, also when a test fails."""

    def __init__(self, c, names, events=CHANGE_EVENTS, under=""):
        self.w = {}
        try:
            for n in names:
                self.w[n] = Watcher(c.m(n).p(under), events, name=n)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, n):
        return self.w[n]

    def close(self):
        for w in self.w.values():
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def collapse(events):
    """Merges runs of the same MODIFY: one write(2) or many, a truncate and a
    write, are one change; inotify itself merges identical queued events.
    Every other event is kept as it came, so a replayed CREATE, CLOSE_WRITE,
    DELETE, ... is still seen twice."""
    out = []
    for ev in events:
        if out and ev == out[-1] and ev[0] == "MODIFY":
            continue
        out.append(ev)
    return out


def new_file(rel):
    return [("CREATE", rel), ("MODIFY", rel), ("CLOSE_WRITE", rel)]


def overwrite(rel):
    return [("MODIFY", rel), ("CLOSE_WRITE", rel)]


def run_steps(watchers, steps, unordered=()):
    """steps: [(label, fn, expected events)], run one after another; after
    each, every watcher must have printed exactly the expected events (in
    order; as a set for labels in `unordered`) before the next step starts.
    Returns {name: [(label, seconds from the
    step's return to its last expected event)]}."""
    lat = {n: [] for n in watchers.w}
    marks = {}
    for label, fn, expected in steps:
        expected = list(expected)
        for n, w in watchers.w.items():
            marks[n] = w.mark()
        fn()
        t_done = time.monotonic()
        for n, w in watchers.w.items():
            def enough(w=w, m=marks[n]):
                return len(collapse(w.since(m))) >= len(expected)
            w.wait_for(enough)
            got = collapse(w.since(marks[n]))
            if label in unordered:
                ok = sorted(got) == sorted(expected)
            else:
                ok = got == expected
            assert ok, (f"step {label!r}: inotify on {n} reported\n  {got}\nexpected\n  "
                        f"{expected}\n(all events on {n}: {w.since()})")
            with w._cv:
                lat[n].append((label, w.events[-1][0] - t_done))
            for ev, rel in expected:
                if ev in ("CREATE,ISDIR", "MOVED_TO,ISDIR"):
                    w.wait_watching(rel)
    return lat


def _check_quiet(ws):
    """After QUIET more seconds without changes, no watcher got anything new
    (a late duplicate of the last step, a replay of a change long done)."""
    counts = {n: w.mark() for n, w in ws.w.items()}
    time.sleep(QUIET)
    for n, count in counts.items():
        extra = ws[n].since(count)
        assert not extra, f"{n}: events after the last change: {extra}"


# -- operations (path-based, so they run the same on any member) --

def op_write(m, rel, data):
    def f():
        assert write_file(m.p(rel), data) is None, f"write {rel} on {m.name}"
    return f


def op_append(m, rel, data):
    def f():
        assert write_file(m.p(rel), data, os.O_WRONLY | os.O_APPEND) is None
    return f


def op(fn, *args):
    return lambda: fn(*args)


def main_steps(src, other):
    """Every kind of change, made through `src` (file/dir names under d/ and
    e/, which exist before watching); `other` makes a few on its own mount."""
    p = src.p
    q = other.p
    return [
        ("create file", op_write(src, "d/f", "a\n"), new_file("d/f")),
        ("overwrite", op_write(src, "d/f", "bb\n"), overwrite("d/f")),
        ("append", op_append(src, "d/f", "more\n"), overwrite("d/f")),
        ("large value", op_write(src, "d/big", os.urandom(300_000)), new_file("d/big")),
        ("empty O_TRUNC of a non-empty file", op_write(src, "d/big", b""), overwrite("d/big")),
        ("mkdir", op(os.mkdir, p("d/sub")), [("CREATE,ISDIR", "d/sub")]),
        ("file in the new dir", op_write(src, "d/sub/x", "x\n"), new_file("d/sub/x")),
        ("rename file", op(os.rename, p("d/f"), p("d/g")),
         [("MOVED_FROM", "d/f"), ("MOVED_TO", "d/g")]),
        ("rename file across dirs", op(os.rename, p("d/g"), p("e/g")),
         [("MOVED_FROM", "d/g"), ("MOVED_TO", "e/g")]),
        ("rename dir", op(os.rename, p("d/sub"), p("d/sub2")),
         [("MOVED_FROM,ISDIR", "d/sub"), ("MOVED_TO,ISDIR", "d/sub2"), ("MOVE_SELF", "d/sub2")]),
        ("write in the renamed dir", op_write(src, "d/sub2/x", "y\n"), overwrite("d/sub2/x")),
        ("chmod", op(os.chmod, p("e/g"), 0o600), [("ATTRIB", "e/g")]),
        ("utimes", op(os.utime, p("e/g"), (1_000_000, 1_000_000)), [("ATTRIB", "e/g")]),
        ("setxattr", op(os.setxattr, p("e/g"), "user.color", b"blue"), [("ATTRIB", "e/g")]),
        ("removexattr", op(os.removexattr, p("e/g"), "user.color"), [("ATTRIB", "e/g")]),
        ("symlink", op(os.symlink, "g", p("e/link")), [("CREATE", "e/link")]),
        ("local create on the other member", op_write(other, "e/h", "h\n"), new_file("e/h")),
        ("rename over an existing file", op(os.rename, p("e/h"), p("e/g")),
         [("MOVED_FROM", "e/h"), ("MOVED_TO", "e/g")]),
        ("local mkdir on the other member", op(os.mkdir, q("e/od")), [("CREATE,ISDIR", "e/od")]),
        ("local rename on the other member", op(os.rename, q("e/g"), q("e/od/g")),
         [("MOVED_FROM", "e/g"), ("MOVED_TO", "e/od/g")]),
        ("local chmod on the other member", op(os.chmod, q("e/od/g"), 0o640),
         [("ATTRIB", "e/od/g")]),
        ("unlink", op(os.unlink, p("e/od/g")), [("DELETE", "e/od/g")]),
        ("unlink symlink", op(os.unlink, p("e/link")), [("DELETE", "e/link")]),
        ("unlink in the renamed dir", op(os.unlink, p("d/sub2/x")), [("DELETE", "d/sub2/x")]),
        ("rmdir", op(os.rmdir, p("d/sub2")),
         [("DELETE_SELF", "d/sub2"), ("DELETE,ISDIR", "d/sub2")]),
        ("local rmdir on the other member", op(os.rmdir, q("e/od")),
         [("DELETE_SELF", "e/od"), ("DELETE,ISDIR", "e/od")]),
        ("local unlink on the other member", op(os.unlink, q("d/big")), [("DELETE", "d/big")]),
    ]


UNORDERED = {"rmdir", "local rmdir on the other member"}


def test_every_change_on_n1_is_reported_once_in_order_on_every_member(cluster):
    """Changes through n1 (remote for n2 and n3) and a few through n3 (remote
    for n1 and n2): all three mounts print the same events, each once."""
    c = cluster.start()
    n1, n3 = c.m("n1"), c.m("n3")
    n1.sh("mkdir d e")
    c.converge()
    with Watchers(c, ["n1", "n2", "n3"]) as ws:
        lat = run_steps(ws, main_steps(n1, n3), UNORDERED)
        _check_quiet(ws)
        seqs = {n: collapse(ws[n].since()) for n in ws.w}
        assert seqs["n1"] == seqs["n2"] == seqs["n3"], seqs
    worst = max((t, n, label) for n, ls in lat.items() for label, t in ls)
    print(f"slowest step: {worst[2]!r} on {worst[1]}: {worst[0] * 1000:.0f} ms")
    t = c.assert_same()
    assert sorted(t) == ["d", "e"], t


def test_shell_commands_on_n1_seen_on_n3(cluster):
    """The commands people type, watched on n3 only: `touch` (open + utimes
    locally) must at least give ATTRIB; `rm -r` a DELETE per entry;
    `cp`, `cat >`, `echo >` and `mv` the usual events."""
    c = cluster.start()
    n1 = c.m("n1")
    n1.sh("mkdir -p conf/tree && echo 1 > conf/tree/a && echo 2 > conf/tree/b && echo x > conf/t")
    c.converge()
    with Watchers(c, ["n3"]) as ws:
        w = ws["n3"]
        m = w.mark()
        n1.sh("touch conf/t")
        w.wait_for(lambda w: ("ATTRIB", "conf/t") in w.since(m))
        got = w.since(m)
        assert got.count(("ATTRIB", "conf/t")) == 1, got
        assert set(got) <= {("ATTRIB", "conf/t"), ("CLOSE_WRITE", "conf/t")}, got

        m = w.mark()
        n1.sh("touch conf/new")
        w.wait_for(lambda w: ("CREATE", "conf/new") in w.since(m))
        w.settle()
        got = collapse(w.since(m))
        assert got[0] == ("CREATE", "conf/new") and got.count(("CREATE", "conf/new")) == 1, got
        assert {e for e, _ in got} <= {"CREATE", "ATTRIB", "CLOSE_WRITE"}, got  # no MODIFY: empty

        m = w.mark()
        n1.sh(": > conf/empty")  # locally: CREATE, CLOSE_WRITE (open created it empty)
        w.wait_for(lambda w: ("CLOSE_WRITE", "conf/empty") in w.since(m))
        w.settle()
        assert w.since(m) == [("CREATE", "conf/empty"), ("CLOSE_WRITE", "conf/empty")], w.since(m)

        m = w.mark()
        n1.sh("rm -r conf/tree")
        want = {("DELETE", "conf/tree/a"), ("DELETE", "conf/tree/b"),
                ("DELETE_SELF", "conf/tree"), ("DELETE,ISDIR", "conf/tree")}
        w.wait_for(lambda w: len(w.since(m)) >= len(want))
        time.sleep(0.3)
        got = w.since(m)
        assert sorted(got) == sorted(want), got
        # The children go before their directory.
        assert got.index(("DELETE,ISDIR", "conf/tree")) > got.index(("DELETE", "conf/tree/a"))

        # cp creates with O_EXCL, which commits the empty file at once (the
        # linearizable create), then the content at close: two revisions, so
        # elsewhere CREATE and the empty file's CLOSE_WRITE, then the content.
        m = w.mark()
        n1.sh("cp conf/t conf/copy")
        w.wait_for(lambda w: len(collapse(w.since(m))) >= 4)
        w.settle()
        assert collapse(w.since(m)) == [("CREATE", "conf/copy"), ("CLOSE_WRITE", "conf/copy")] + \
            overwrite("conf/copy"), w.since(m)

        m = w.mark()
        n1.sh("cat conf/t > conf/copy2 && echo v > conf/t && mv conf/copy2 conf/t")
        want = new_file("conf/copy2") + overwrite("conf/t") + \
            [("MOVED_FROM", "conf/copy2"), ("MOVED_TO", "conf/t")]
        w.wait_for(lambda w: len(collapse(w.since(m))) >= len(want))
        assert collapse(w.since(m)) == want, w.since(m)
        _check_quiet(ws)
    assert read_file(c.m("n3").p("conf/t")) == b"x\n"


def test_changes_under_a_directory_gone_by_replay_time(cluster):
    """`rm -r` of 40 files, and writes into a directory moved right after:
    n3 applies the directory's deletion or move before it has replayed the
    changes inside it, and must still report each one, under its old path."""
    c = cluster.start()
    n1 = c.m("n1")
    n1.sh("mkdir -p big moved && for i in $(seq 40); do echo $i > big/f$i; done")
    c.converge()
    with Watchers(c, ["n3"]) as ws:
        w = ws["n3"]
        n1.sh("rm -r big")
        want = [("DELETE", f"big/f{i}") for i in range(1, 41)] + \
            [("DELETE_SELF", "big"), ("DELETE,ISDIR", "big")]
        # 42 replayed steps: on a loaded machine they take longer than one step's 5 s
        assert w.wait_for(lambda w: ("DELETE,ISDIR", "big") in w.since(), 30), w.since()
        w.settle()
        assert sorted(w.since()) == sorted(want), w.since()

        m = w.mark()
        n1.sh("for i in $(seq 10); do echo $i > moved/g$i; done; mv moved moved2")
        assert w.wait_for(lambda w: ("MOVED_TO,ISDIR", "moved2") in w.since(m), 30), w.since(m)
        w.settle()
        got = collapse(w.since(m))
        want = [e for i in range(1, 11) for e in new_file(f"moved/g{i}")] + \
            [("MOVED_FROM,ISDIR", "moved"), ("MOVED_TO,ISDIR", "moved2"), ("MOVE_SELF", "moved2")]
        assert sorted(got) == sorted(want), got  # inotifywait names MOVE_SELF by the new path
        assert got.index(("CLOSE_WRITE", "moved/g10")) < got.index(("MOVED_FROM,ISDIR", "moved"))
    c.assert_same()


def test_local_changes_on_n3_reported_once_there(cluster):
    """Changes through n3's own mount, watched on n3 (and n1 for contrast):
    the kernel reports them once, the replay adds nothing."""
    c = cluster.start()
    n3 = c.m("n3")
    n3.sh("mkdir d e")
    c.converge()
    with Watchers(c, ["n3", "n1"]) as ws:
        run_steps(ws, main_steps(n3, n3), UNORDERED)
        _check_quiet(ws)
        assert collapse(ws["n3"].since()) == collapse(ws["n1"].since())


def test_learner_sees_changes_from_everywhere_and_its_own_once(cluster):
    """A learner added with --join: changes through n1 and through the
    learner itself show up on the learner and on n3, each once."""
    c = cluster.start()
    c.m("n1").sh("mkdir d e")
    j = c.join("n4", 4, via="n2")
    # the mount may be up before the learner has applied its own admission
    assert wait_until(lambda: c.role("n4") == "learner", 10), c.status("n4")
    c.converge()
    with Watchers(c, ["n4", "n3"]) as ws:
        run_steps(ws, main_steps(c.m("n1"), j), UNORDERED)
        _check_quiet(ws)
        assert collapse(ws["n4"].since()) == collapse(ws["n3"].since())
    c.assert_same()


def test_cli_put_and_del_show_up_on_every_mount(cluster):
    """`quorumfs put/del --endpoints ...` change no mount directly: every
    member replays them."""
    c = cluster.start()
    c.m("n1").sh("mkdir -p cli/tree/sub && echo f > cli/tree/sub/f && echo g > cli/tree/g")
    c.converge()
    names = ["n1", "n2", "n3"]
    with Watchers(c, names) as ws:
        steps = [
            ("put new", lambda: c.cli("put", "/cli/k", "v1"), new_file("cli/k")),
            ("put again", lambda: c.cli("put", "/cli/k", "value two"), overwrite("cli/k")),
            ("put through n3's client port",
             lambda: c.cli("put", "/cli/k2", "v", endpoints=["n3"]), new_file("cli/k2")),
            ("del", lambda: c.cli("del", "/cli/k"), [("DELETE", "cli/k")]),
        ]
        run_steps(ws, steps)
        # A put that creates its parent directory: the directory's own event
        # on every mount (what is inside it may be missed by inotifywait -r).
        marks = {n: ws[n].mark() for n in names}
        c.cli("put", "/cli/newdir/deep", "v")
        for n in names:
            ws[n].wait_for(lambda w, m=marks[n]: ("CREATE,ISDIR", "cli/newdir") in w.since(m))
        time.sleep(0.5)
        for n in names:
            got = collapse(ws[n].since(marks[n]))
            assert got[0] == ("CREATE,ISDIR", "cli/newdir"), (n, got)
            # Then, if inotifywait's watch on newdir came in time, the file's
            # events, each once (which of them it caught is inotify's race).
            rest = got[1:]
            whole = new_file("cli/newdir/deep")
            assert rest == whole[len(whole) - len(rest):], (n, got)
        # del --prefix: one revision for the whole subtree; the directory's
        # own events once (the entries below: test_cli_del_prefix_reports_every_entry).
        marks = {n: ws[n].mark() for n in names}
        c.cli("del", "/cli/tree", "--prefix")
        for n in names:
            ws[n].wait_for(lambda w, m=marks[n]: ("DELETE,ISDIR", "cli/tree") in w.since(m))
        time.sleep(0.5)
        for n in names:
            got = ws[n].since(marks[n])
            own = [e for e in got if e[1] == "cli/tree"]
            assert own == [("DELETE_SELF", "cli/tree"), ("DELETE,ISDIR", "cli/tree")], (n, got)
            assert all(got.count(e) == 1 for e in got), (n, got)
            assert got[-1] == ("DELETE,ISDIR", "cli/tree"), (n, got)
        _check_quiet(ws)
    for n in names:
        assert not os.path.lexists(c.m(n).p("cli/tree"))
        assert read_file(c.m(n).p("cli/k2")) == b"v"
        assert read_file(c.m(n).p("cli/newdir/deep")) == b"v"
        assert not os.path.exists(c.m(n).p("cli/k"))


def test_cli_del_prefix_reports_every_entry(cluster):
    """`quorumfs del DIR --prefix` deletes a subtree in one revision; every
    mount reports each entry's deletion once, children before their
    directory, as `rm -r` there would."""
    c = cluster.start()
    c.m("n1").sh("mkdir -p tree/sub && echo x > tree/sub/f && echo y > tree/g")
    c.converge()
    want = [("DELETE", "tree/sub/f"), ("DELETE_SELF", "tree/sub"), ("DELETE,ISDIR", "tree/sub"),
            ("DELETE", "tree/g"), ("DELETE_SELF", "tree"), ("DELETE,ISDIR", "tree")]
    with Watchers(c, ["n1", "n3"]) as ws:
        c.cli("del", "/tree", "--prefix")
        for n in ("n1", "n3"):
            ws[n].wait_for(lambda w: len(w.since()) >= len(want))
        time.sleep(0.5)
        for n in ("n1", "n3"):
            got = ws[n].since()
            assert sorted(got) == sorted(want), f"inotify on {n}: {got}"
            assert got.index(("DELETE", "tree/sub/f")) < got.index(("DELETE,ISDIR", "tree/sub")) \
                < got.index(("DELETE,ISDIR", "tree")), got


def test_no_events_when_nothing_changes(cluster):
    """Watching every event type (OPEN and ACCESS too) on an idle cluster
    that has just taken writes, a leader change and a learner: nothing."""
    c = cluster.start()
    n1 = c.m("n1")
    n1.sh("mkdir -p a/b && for i in $(seq 20); do echo $i > a/b/k$i; done && "
          "mv a/b/k1 a/k1 && rm a/b/k2 && chmod 600 a/k1")
    c.converge()
    names = ["n1", "n2", "n3"]
    with Watchers(c, names, events=None) as ws:
        time.sleep(2.5)
        for n in names:
            assert ws[n].since() == [], f"{n} reported events with no change: {ws[n].since()}"
    assert tree(c.m("n3").mnt)["a/k1"] == ("f", b"1\n")
