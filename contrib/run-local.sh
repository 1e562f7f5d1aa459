#!/usr/bin/env bash
# `make run`: a local demo cluster. Starts three members on loopback (each on
# its own address 127.0.0.N, so they can be told apart), each with its own
# data dir under ./data and mount under ./mnt, and stops them all (finishing
# in-flight writes and unmounting) on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
members=(n1 n2 n3)
cluster=n1=127.0.0.1:23801,n2=127.0.0.2:23802,n3=127.0.0.3:23803
pids=()

stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping ${members[*]} ..."
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	echo "stopped; data is kept in ./data (rm -rf data to start afresh)"
}
trap stop INT TERM EXIT

for m in "${members[@]}"; do
	n=${m#n}
	mkdir -p "mnt/$m" "data/$m"
	bin/quorumfs serve --name "$m" --data-dir "data/$m" --mount "mnt/$m" \
		--listen-peer "127.0.0.$n:2380$n" --listen-client "127.0.0.$n:2379$n" \
		--metrics-listen "127.0.0.$n:2381$n" \
		--initial-cluster "$cluster" 2>>"data/$m/quorumfs.log" &
	pids+=($!)
done
for m in "${members[@]}"; do
	for _ in $(seq 100); do
		[ -r "mnt/$m/.quorumfs/status" ] && break
		sleep 0.1
	done
	if ! [ -r "mnt/$m/.quorumfs/status" ]; then
		echo "member $m did not come up; its log:" >&2
		tail -n 20 "data/$m/quorumfs.log" >&2
		exit 1
	fi
done

cat <<MSG
quorumfs is running: ${members[*]}, mounted at ./mnt/n1 ./mnt/n2 ./mnt/n3
(logs: data/NAME/quorumfs.log; clients: 127.0.0.1:23791 127.0.0.2:23792 127.0.0.3:23793;
 metrics: http://127.0.0.1:23811/metrics, /health, /readyz, likewise 127.0.0.2:23812 ...)

  echo 10.0.0.5 > mnt/n1/db-host          # one write, one revision, on a quorum
  cat mnt/n3/db-host                       # every member sees it at once
  mkdir -p mnt/n2/config/web && echo 8080 > mnt/n2/config/web/port
  getfattr -d -m - mnt/n3/db-host          # revision, version, create_revision
  cat mnt/n1/.quorumfs/status              # JSON: name, role, leader, term, revision, ...
  cat mnt/n1/.quorumfs/members             # name, id, role, addresses
  cat mnt/n1/.quorumfs/metrics             # Prometheus text: commits, fsync latency, ...
  ls mnt/n1/.quorumfs/rev/                 # past revisions, read-only

Press Ctrl-C to stop.
MSG
wait "${pids[@]}"
