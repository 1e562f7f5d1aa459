#!/usr/bin/python3
"""Latency through a mounted quorumfs: revisions per write and the median/p99
of N sequential writes and reads, both as system calls (open/write/close) and
as the shell commands people type (`echo v > key`, `cat key`).

usage: latency.py MOUNT [N]
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchcluster import read_file, write_file  # noqa: E402
import workloads as wl  # noqa: E402


def rev(mnt):
    return int(os.getxattr(mnt, "user.quorumfs.revision"))


def stats(name, samples):
    med, p99 = wl.median_p99(samples)
    print(f"{name:<34} median {med * 1e6:8.1f} us   p99 {p99 * 1e6:8.1f} us   (n={len(samples)})")


def main():
    mnt, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    d = os.path.join(mnt, "bench-latency")
    os.makedirs(d, exist_ok=True)
    key = os.path.join(d, "key")

    before = rev(mnt)
    w = wl.timed(lambda i: write_file(key, f"value {i}\n"), n)
    print(f"revisions per write: {(rev(mnt) - before) / n:.2f}")
    stats("open/write/close (sequential)", w)
    stats("open/read/close", wl.timed(lambda _: read_file(key), n))
    before = rev(mnt)
    sh = wl.timed(lambda i: subprocess.run(["sh", "-c", f"echo {i} > {key}"], check=True), n)
    print(f"revisions per `echo v > key`: {(rev(mnt) - before) / n:.2f}")
    stats("sh -c 'echo v > key'", sh)
    stats("cat key", wl.timed(lambda _: subprocess.run(["cat", key], check=True,
                                                      stdout=subprocess.DEVNULL), n))
    stats("sh -c 'true' (process spawn floor)",
          wl.timed(lambda _: subprocess.run(["sh", "-c", "true"], check=True), n))


if __name__ == "__main__":
    main()
