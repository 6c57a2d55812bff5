#!/usr/bin/env bash
# Makes a cluster CA and one certificate per node for pnn's TLS (mutual
# authentication): DIR/ca.pem (give it to every node as --tls-ca), DIR/ca.key (keep
# it away from the nodes), and DIR/NAME.pem + DIR/NAME.key for each NAME (that
# node's --tls-cert and --tls-key). An existing DIR/ca.pem + ca.key is reused, so
# nodes can be added later. Needs the openssl command (Debian package openssl).
#
# usage: scripts/make-certs.sh DIR NAME [NAME...]     e.g. make-certs.sh certs coordinator host1 host2
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 DIR NAME [NAME...]" >&2
  exit 2
fi
dir=$1
shift
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -subj "/CN=pnn cluster CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
fi
for name in "$@"; do
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$name" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 825 -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr"
  echo "$dir/$name.pem $dir/$name.key"
done
chmod 644 "$dir/ca.pem" "$dir"/*.pem
