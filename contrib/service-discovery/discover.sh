#!/usr/bin/env bash
# Lists the instances of a service, then reports them coming and going, as
# seen through any member's mount (changes made through other members arrive
# as ordinary inotify events).
#
# usage: discover.sh MOUNT SERVICE
#   e.g. discover.sh mnt/n3 web
set -euo pipefail
mnt=$1 service=$2
dir="$mnt/services/$service"
mkdir -p "$dir"

for f in "$dir"/*; do
	[ -e "$f" ] && echo "up   $(basename "$f") $(cat "$f")"
done
inotifywait -q -m -e close_write,moved_to,delete,moved_from --format '%e %f' "$dir" |
	while read -r event name; do
		case $event in
		CLOSE_WRITE* | MOVED_TO*) echo "up   $name $(cat "$dir/$name" 2>/dev/null)" ;;
		DELETE* | MOVED_FROM*) echo "down $name" ;;
		esac
	done
