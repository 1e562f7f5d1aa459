"""Helpers for the end-to-end tests: one quorumfs member as a subprocess on a
real mount, plus small wrappers for the checks every test file needs.
Fixtures live in conftest.py; this module has no pytest state."""
import errno
import json
import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# QFS_DAEMON=bin/quorumfs-tsan runs the suite against another build.
QUORUMFS = Path(os.environ.get("QFS_DAEMON", REPO / "bin" / "quorumfs")).resolve()
HELPER = REPO / "bin" / "mount.quorumfs"

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

_ERROR_LINE = re.compile(r'^\S+\s+error\s|"level"\s*:\s*"error"|AddressSanitizer|runtime error:')
# A well-formed log line (text or JSON). Anything else on stderr (a fatal
# message printed before logging is set up, an assertion, libfuse's own
# complaints, a sanitizer report) counts as an error too.
_LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info |warn |error) |^\{"ts":')
_WARN_LINE = re.compile(r'^\S+\s+warn\s|"level"\s*:\s*"warn"')


def _unescape_mountinfo(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def quorumfs_mounts():
    """Mount points of every fuse.quorumfs mount, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            if rest.split(" ", 1)[0] == "fuse.quorumfs":
                out.append(_unescape_mountinfo(fields.split(" ")[4]))
    return out


def is_mounted(mnt):
    return os.path.realpath(mnt) in quorumfs_mounts()


def lazy_unmount(mnt):
    subprocess.run(["fusermount3", "-u", "-z", str(mnt)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def daemon_pids(mnt):
    """Live (non-zombie) `quorumfs serve` processes mounting mnt."""
    mnt = os.path.realpath(mnt)
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or b"serve" not in argv:
            continue
        for i, a in enumerate(argv[:-1]):
            if a == b"--mount" and os.path.realpath(argv[i + 1].decode()) == mnt:
                pids.append(int(d.name))
    return pids


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def xattr_int(path, name):
    return int(os.getxattr(path, name).rstrip(b"\0").strip())


def write_file(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """open/write/close; returns None or the errno of the first failing step.
    A commit error may surface at write or at close."""
    if isinstance(data, str):
        data = data.encode()
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        return e.errno
    err = None
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as e:
        err = e.errno
    try:
        os.close(fd)
    except OSError as e:
        err = err or e.errno
    return err


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def errno_of(fn, *args):
    """Runs fn(*args); returns the errno it raised, or None."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return None


def errname(e):
    return errno.errorcode.get(e, str(e)) if e else "success"


def sh(cmd, cwd=None, check=True, timeout=60):
    """bash -c cmd; returns the CompletedProcess (text). check: raise with output on failure."""
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"`{cmd}` exited {r.returncode}\nstdout: {r.stdout}\n"
                             f"stderr: {r.stderr}")
    return r


class Member:
    """One `quorumfs serve` process with its data dir, mount point and log.

    The log file accumulates across restarts; log_text(run=True) is the part
    written by the current (or last) run."""

    def __init__(self, base, name, args, opts=None):
        self.base = Path(base)
        self.name = name
        self.args = list(args)
        self.opts = opts
        self.data_dir = self.base / "data"
        self.mnt = self.base / "mnt"
        self.log_path = self.base / "daemon.log"
        self.proc = None
        self.run_offset = 0
        self.mnt.mkdir(parents=True, exist_ok=True)

    # -- lifecycle --

    def command(self):
        cmd = [str(QUORUMFS), "serve", "--name", self.name, "--data-dir", str(self.data_dir),
               "--mount", str(self.mnt), *self.args]
        if self.opts:
            cmd += ["-o", self.opts]
        return cmd

    def spawn(self):
        """Starts the process without waiting for the mount."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.run_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)

    def start(self, timeout=READY_TIMEOUT):
        self.spawn()
        self.wait_ready(timeout)
        return self

    restart = start

    def ready(self):
        if not is_mounted(self.mnt):
            return False
        try:
            return len(read_file(self.mnt / ".quorumfs" / "status")) > 0
        except OSError:
            return False

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not self.ready():
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"{self.name} exited with {rc} before its mount was "
                                     f"ready; log:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: mount not ready after {timeout} s; "
                                     f"log:\n{self.log_text()}")
            time.sleep(0.05)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s; log:\n"
                                 f"{self.log_text()}") from None

    def stop(self, sig=signal.SIGTERM):
        """Clean stop: exit status 0 and the mount gone."""
        self.proc.send_signal(sig)
        rc = self.wait_exit()
        assert rc == 0, f"{self.name} exited {rc} on {sig.name}; log:\n{self.log_text()}"
        assert not is_mounted(self.mnt), f"{self.mnt} still mounted after {sig.name}"

    def kill9(self, unmount=True):
        """Crash: SIGKILL, then (unless told not to) remove the dead mount the
        way an operator would."""
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        if unmount:
            lazy_unmount(self.mnt)
            assert wait_until(lambda: not is_mounted(self.mnt), 5), f"{self.mnt} still mounted"

    def cleanup(self):
        """Whatever state we are in: no mount and no process afterwards.
        A live daemon gets SIGTERM first (its own clean unmount: unmounting
        under it as well would make it log a failed unmount); a stuck one
        is lazily unmounted, then killed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                lazy_unmount(self.mnt)
                self.proc.kill()
                self.proc.wait(5)
        for sig in (signal.SIGTERM, signal.SIGKILL):  # e.g. started by mount.quorumfs
            for pid in daemon_pids(self.mnt):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if wait_until(lambda: not daemon_pids(self.mnt), 5):
                break
        if is_mounted(self.mnt):
            lazy_unmount(self.mnt)

    def abort(self):
        """Watchdog: kill -9 without waiting, so FUSE calls blocked on it fail."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        for pid in daemon_pids(self.mnt):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- log --

    def log_text(self, run=False):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.run_offset if run else 0)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def error_lines(self):
        return [l for l in self.log_text().splitlines()
                if l.strip() and (_ERROR_LINE.search(l) or not _LOG_LINE.search(l))]

    def warn_lines(self, run=True):
        return [l for l in self.log_text(run).splitlines() if _WARN_LINE.search(l)]

    # -- the mounted tree --

    def p(self, rel=""):
        return self.mnt / rel

    def sh(self, cmd, check=True, timeout=60):
        """bash -c cmd in the mount directory."""
        return sh(cmd, cwd=self.mnt, check=check, timeout=timeout)

    def revision(self, rel=""):
        """user.quorumfs.revision of rel; of the root that is the store's revision."""
        return xattr_int(self.p(rel), "user.quorumfs.revision")

    def status(self):
        return json.loads(read_file(self.p(".quorumfs/status")))

    def wal_files(self):
        return sorted((self.data_dir / "wal").glob("*.wal"))


# -- WAL surgery (record: u32 len | u32 crc(len) | u32 crc(payload) | payload) --

WAL_HEADER = 12


def wal_records(path):
    """(offset, payload length) of each record until the end or zero padding."""
    data = Path(path).read_bytes()
    recs, off = [], 0
    while off + WAL_HEADER <= len(data):
        (length,) = struct.unpack_from("<I", data, off)
        if length == 0 or off + WAL_HEADER + length > len(data):
            break
        recs.append((off, length))
        off += WAL_HEADER + length
    return recs


# -- renameat2(2), which os.rename does not expose --

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_SYS_renameat2_x86_64 = 316


def renameat2(old, new, flags):
    """Raises OSError like os.rename."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    o, n = os.fsencode(old), os.fsencode(new)
    if hasattr(libc, "renameat2"):
        rc = libc.renameat2(AT_FDCWD, o, AT_FDCWD, n, ctypes.c_uint(flags))
    else:
        rc = libc.syscall(_SYS_renameat2_x86_64, AT_FDCWD, o, AT_FDCWD, n, ctypes.c_uint(flags))
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(old), None, str(new))
