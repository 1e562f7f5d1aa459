#!/usr/bin/python3
"""Loads many keys into a member through its client port (--listen-client), as
fast as the member takes them: CONNS connections, each sending one PUT at a
time (the protocol answers requests in turn), keys /PREFIX/dNNNN/kNNNNNNN
(1000 per directory), VALUE_BYTES each. Every PUT is one Raft entry, so this
also drives the member through --snapshot-entries snapshots.

usage: bulk_put.py HOST:PORT KEYS [CONNS] [VALUE_BYTES] [PREFIX] [FIRST]
"""
import asyncio
import struct
import sys
import time
import zlib

MAGIC = 0x43534651
VERSION = 1
REQ_PUT = 8
RESPONSE = 0x80


def put_frame(key, value):
    k = key.encode() + b"\0"
    payload = struct.pack("<I", len(k)) + k + struct.pack("<I", len(value)) + value
    return struct.pack("<IBBHII", MAGIC, VERSION, REQ_PUT, 0, len(payload),
                       zlib.crc32(payload)) + payload


async def writer(host, port, keys, value, prefix, counter):
    r, w = await asyncio.open_connection(host, port)
    for i in keys:
        w.write(put_frame(f"/{prefix}/d{i // 1000:04d}/k{i:07d}", value))
        hdr = await r.readexactly(16)
        _, _, typ, _, length, _ = struct.unpack("<IBBHII", hdr)
        body = await r.readexactly(length)
        status = struct.unpack_from("<i", body)[0]
        if typ != REQ_PUT | RESPONSE or status != 0:
            raise SystemExit(f"PUT {i}: type {typ}, status {status}")
        counter[0] += 1
    w.close()


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n = int(sys.argv[2])
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    vbytes = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    prefix = sys.argv[5] if len(sys.argv) > 5 else "bulk"
    first = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    value = b"v" * vbytes
    counter = [0]
    t0 = time.monotonic()

    async def progress():
        while True:
            await asyncio.sleep(10)
            el = time.monotonic() - t0
            print(f"  {counter[0]} keys, {counter[0] / el:.0f}/s", flush=True)
    p = asyncio.ensure_future(progress())
    ids = range(first, first + n)
    await asyncio.gather(*(writer(host, int(port), ids[c::conns], value, prefix, counter)
                           for c in range(conns)))
    p.cancel()
    el = time.monotonic() - t0
    print(f"{n} keys in {el:.1f} s ({n / el:.0f}/s)")


if __name__ == "__main__":
    asyncio.run(main())
