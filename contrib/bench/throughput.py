#!/usr/bin/python3
"""Write throughput through a mounted quorumfs with W concurrent writers, each
doing open/write/close on its own key (every close is a durable commit).

usage: throughput.py MOUNT [WRITERS] [SECONDS]
"""
import os
import sys
import threading
import time


def main():
    mnt = sys.argv[1]
    writers = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    d = os.path.join(mnt, "bench-throughput")
    os.makedirs(d, exist_ok=True)
    counts = [0] * writers
    stop = time.monotonic() + seconds

    def run(w):
        key = os.path.join(d, f"w{w}")
        while time.monotonic() < stop:
            with open(key, "w") as f:
                f.write(f"{counts[w]}\n")
            counts[w] += 1

    rev0 = int(os.getxattr(mnt, "user.quorumfs.revision"))
    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    revs = int(os.getxattr(mnt, "user.quorumfs.revision")) - rev0
    total = sum(counts)
    print(f"{writers} writers, {elapsed:.1f} s: {total} writes, {total / elapsed:.0f} writes/s, "
          f"{revs} revisions")


if __name__ == "__main__":
    main()
