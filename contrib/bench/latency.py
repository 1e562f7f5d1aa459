#!/usr/bin/python3
"""Latency through a mounted quorumfs: revisions per write and the median/p99
of N sequential writes and reads, both as system calls (open/write/close) and
as the shell commands people type (`echo v > key`, `cat key`).

usage: latency.py MOUNT [N]
"""
import os
import statistics
import subprocess
import sys
import time


def rev(mnt):
    return int(os.getxattr(mnt, "user.quorumfs.revision"))


def stats(name, samples):
    samples.sort()
    med = statistics.median(samples) * 1e6
    p99 = samples[int(len(samples) * 0.99) - 1] * 1e6
    print(f"{name:<34} median {med:8.1f} us   p99 {p99:8.1f} us   (n={len(samples)})")


def timed(fn, n):
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def main():
    mnt, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    d = os.path.join(mnt, "bench-latency")
    os.makedirs(d, exist_ok=True)
    key = os.path.join(d, "key")

    def write(i):
        with open(key, "w") as f:
            f.write(f"value {i}\n")

    def read(_):
        with open(key) as f:
            f.read()

    before = rev(mnt)
    w = timed(write, n)
    print(f"revisions per write: {(rev(mnt) - before) / n:.2f}")
    stats("open/write/close (sequential)", w)
    stats("open/read/close", timed(read, n))
    before = rev(mnt)
    sh = timed(lambda i: subprocess.run(["sh", "-c", f"echo {i} > {key}"], check=True), n)
    print(f"revisions per `echo v > key`: {(rev(mnt) - before) / n:.2f}")
    stats("sh -c 'echo v > key'", sh)
    stats("cat key", timed(lambda _: subprocess.run(["cat", key], check=True,
                                                   stdout=subprocess.DEVNULL), n))
    stats("sh -c 'true' (process spawn floor)",
          timed(lambda _: subprocess.run(["sh", "-c", "true"], check=True), n))


if __name__ == "__main__":
    main()
