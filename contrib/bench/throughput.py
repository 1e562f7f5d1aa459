#!/usr/bin/python3
"""Write throughput through a mounted quorumfs with W concurrent writers, each
doing open/write/close on its own key (every close is a durable commit), for
S seconds after each has written its key once.

usage: throughput.py MOUNT [WRITERS] [SECONDS]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchcluster import write_file  # noqa: E402
import workloads as wl  # noqa: E402


def main():
    mnt = sys.argv[1]
    writers = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    d = os.path.join(mnt, "bench-throughput")
    os.makedirs(d, exist_ok=True)

    def make_writer(w):
        key = os.path.join(d, f"w{w}")
        return lambda i: write_file(key, f"{i}\n")

    rev0 = int(os.getxattr(mnt, "user.quorumfs.revision"))
    rate = wl.throughput(make_writer, writers, seconds)
    revs = int(os.getxattr(mnt, "user.quorumfs.revision")) - rev0
    print(f"{writers} writers, {seconds:g} s: {rate:.0f} writes/s, {revs} revisions "
          f"(including each writer's first write)")


if __name__ == "__main__":
    main()
