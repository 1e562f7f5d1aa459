#!/usr/bin/env bash
# `make run`: a local demo. Starts the members on loopback, each with its own
# data dir under ./data and mount under ./mnt, and stops them all (finishing
# in-flight writes and unmounting) on Ctrl-C.
#
# Until replication lands this is one member, n1, mounted at ./mnt/n1.
set -euo pipefail
cd "$(dirname "$0")/.."
members=(n1)
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
	mkdir -p "mnt/$m" "data/$m"
	bin/quorumfs serve --name "$m" --data-dir "data/$m" --mount "mnt/$m" \
		2>>"data/$m/quorumfs.log" &
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
quorumfs is running: ${members[*]}, mounted at ./mnt/${members[0]} (logs: data/NAME/quorumfs.log)

  echo 10.0.0.5 > mnt/n1/db-host          # one write, one revision
  cat mnt/n1/db-host
  mkdir -p mnt/n1/config/web && echo 8080 > mnt/n1/config/web/port
  getfattr -d -m - mnt/n1/db-host          # revision, version, create_revision
  cat mnt/n1/.quorumfs/status              # JSON: name, role, revision, ...
  ls mnt/n1/.quorumfs/rev/                 # past revisions, read-only

Press Ctrl-C to stop.
MSG
wait "${pids[@]}"
