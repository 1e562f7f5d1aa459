#!/usr/bin/env bash
# Test certificates for quorumfs mutual TLS (README "TLS"), made with the
# openssl command: a CA, then one certificate and key per name.
#
#   contrib/gen-certs.sh DIR [NAME[=IP[,IP...]]]...
#
# NAME=IP,...  a member: CN=NAME, subjectAltName IP:... (its peer and client
#              addresses; a member dialling it checks the IP it dialled), and
#              usable both to accept and to connect (serverAuth, clientAuth).
# NAME         a user of the client port: CN=NAME, no address.
# No names: n1=127.0.0.1 n2=127.0.0.2 n3=127.0.0.3, as `make run` uses.
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/NAME.crt, DIR/NAME.key (keys mode 600).
# An existing DIR/ca.key is reused, so members can be added later; an
# existing NAME.crt is replaced. Keys are EC P-256, certificates valid for
# DAYS days (environment, default 825; the CA 3650). This is a test CA: keep
# ca.key off the members, or use your own PKI for production.
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage ;; esac
command -v openssl >/dev/null || {
	echo "gen-certs.sh: the openssl command is missing (apt-get install openssl)" >&2
	exit 1
}
dir=$1
shift
[ $# -gt 0 ] || set -- n1=127.0.0.1 n2=127.0.0.2 n3=127.0.0.3
days=${DAYS:-825}
umask 077
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$dir/ca.key" ]; then
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" -days 3650 -subj "/CN=quorumfs test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$tmp/err" ||
		{ cat "$tmp/err" >&2; exit 1; }
	chmod 644 "$dir/ca.crt"
	echo "$dir/ca.crt: new CA"
fi

for spec in "$@"; do
	name=${spec%%=*}
	ips=
	[ "$spec" != "$name" ] && ips=${spec#*=}
	if ! [[ $name =~ ^[A-Za-z0-9._-]+$ ]]; then
		echo "gen-certs.sh: '$name': a name is letters, digits, '.', '_' and '-'" >&2
		exit 2
	fi
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "subjectKeyIdentifier=hash"
		echo "authorityKeyIdentifier=keyid"
		if [ -n "$ips" ]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=IP:${ips//,/,IP:}"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$tmp/ext"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/$name.key" -out "$tmp/$name.csr" -subj "/CN=$name" 2>"$tmp/err" &&
		openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
			-CAcreateserial -CAserial "$tmp/serial" -days "$days" -sha256 \
			-extfile "$tmp/ext" -out "$dir/$name.crt" 2>"$tmp/err" ||
		{ cat "$tmp/err" >&2; exit 1; }
	chmod 644 "$dir/$name.crt"
	echo "$dir/$name.crt: CN=$name${ips:+, IP $ips}"
done
