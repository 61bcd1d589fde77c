#!/usr/bin/env bash
# Regenerate the test TLS files (only the weights tests use them, on 127.0.0.1): a throwaway CA (ca.pem; its key is
# discarded) and a certificate for Google Drive's host names signed by it (drive.pem, drive-key.pem). The loopback
# server (tests/weights/server.py) terminates its HTTPS proxy tunnels with them; REQUESTS_CA_BUNDLE=ca.pem.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 \
  -subj "/CN=dla-plugins test CA" -keyout "$tmp/ca-key.pem" -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=drive.google.com" \
  -keyout drive-key.pem -out "$tmp/drive.csr"
cat > "$tmp/ext.cnf" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:drive.google.com,DNS:drive.usercontent.google.com,DNS:docs.google.com
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EXT
openssl x509 -req -in "$tmp/drive.csr" -CA ca.pem -CAkey "$tmp/ca-key.pem" -CAcreateserial -CAserial "$tmp/ca.srl" \
  -days 36500 -extfile "$tmp/ext.cnf" -out drive.pem
