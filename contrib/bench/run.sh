#!/usr/bin/env bash
# `make bench` (SPEC §8): the same workloads against a three-member quorumfs
# cluster and a three-member etcd 3.4 cluster on loopback, one table of both
# numbers and their ratio (contrib/bench/compare.py says what each measures).
# About 13 minutes on 2 cores, 10 of them loading 1 M keys into quorumfs.
#   BENCH_QUICK=1   fewer samples and 10 000 keys: under a minute
#   BENCH_KEYS=N    keys loaded for the restart and memory rows
# The other scripts here measure quorumfs alone: latency.py and throughput.py
# on any mount, watch_latency.py and lease_accuracy.py on their own cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."
args=()
if [ -n "${BENCH_QUICK:-}" ] && [ "$BENCH_QUICK" != 0 ]; then args+=(--quick); fi
if [ -n "${BENCH_KEYS:-}" ]; then args+=(--keys "$BENCH_KEYS"); fi
exec /usr/bin/python3 contrib/bench/compare.py "${args[@]}"
