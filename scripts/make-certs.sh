#!/usr/bin/env bash
# Makes a cluster CA and one certificate per node for pnn's TLS (mutual
# authentication): DIR/ca.pem (give it to every node as --tls-ca), DIR/ca.key (keep
# it away from the nodes), and DIR/NAME.pem + DIR/NAME.key for each NAME (that
# node's --tls-cert and --tls-key). An existing DIR/ca.pem + ca.key is reused, so
# nodes can be added later. Needs the openssl command (Debian package openssl).
#
# NAME:coordinator or NAME:worker gives the certificate a role (extendedKeyUsage,
# which OpenSSL checks in the handshake): a coordinator's certificate only connects
# to serve nodes (clientAuth), a worker's only serves (serverAuth), so a serve
# node's certificate cannot drive other serve nodes and cannot pass for a
# coordinator. A NAME without a role may act as either (docs/security.md).
#
# usage: scripts/make-certs.sh DIR NAME[:ROLE] [NAME[:ROLE]...]
#   e.g. make-certs.sh certs coordinator:coordinator host1:worker host2:worker
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
for spec in "$@"; do
  name=${spec%%:*}
  role=""
  [ "$name" != "$spec" ] && role=${spec#*:}
  ext="$dir/$name.ext"
  case "$role" in
    coordinator) printf 'extendedKeyUsage=clientAuth\n' > "$ext" ;;
    worker) printf 'extendedKeyUsage=serverAuth\n' > "$ext" ;;
    "") : > "$ext" ;;
    *) echo "$0: $spec: the role is coordinator or worker" >&2; exit 2 ;;
  esac
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$name" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 825 -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
  echo "$dir/$name.pem $dir/$name.key"
done
chmod 644 "$dir/ca.pem" "$dir"/*.pem
