#!/usr/bin/env bash
# Registers this host as an instance of a service, with a lease that expires
# TTL seconds after the last renewal, and renews it until stopped. When the
# host (or this script) dies, every member deletes the key within TTL seconds
# and inotify watchers everywhere see it go.
#
# usage: register.sh MOUNT SERVICE INSTANCE ADDRESS [TTL]
#   e.g. register.sh mnt/n1 web host1 10.0.0.5:8080 5
set -euo pipefail
mnt=$1 service=$2 instance=$3 address=$4 ttl=${5:-5}
key="$mnt/services/$service/$instance"

mkdir -p "$mnt/services/$service"
echo "$address" > "$key"
setfattr -n user.quorumfs.ttl -v "$ttl" "$key"
lease=$(getfattr -n user.quorumfs.lease --only-values "$key")
echo "registered $service/$instance at $address (lease $lease, ttl ${ttl}s)"

# Renew well within the ttl; a missed renewal or two is survivable.
period=$(awk -v t="$ttl" 'BEGIN { p = t / 3; print (p < 0.5 ? 0.5 : p) }')
trap 'rm -f "$key"; echo "deregistered $service/$instance"; exit 0' INT TERM
while sleep "$period"; do
	if ! touch "$key" 2>/dev/null; then
		echo "renewal failed (no quorum?); will retry" >&2
	fi
done
