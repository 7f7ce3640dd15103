#!/usr/bin/env bash
# A private CA and a TLS certificate for the docker-compose ML node, in ./certs (or the folder given):
#   root-ca.pem         the CA: give it to clients (neuralpipe --ca-certs certs/root-ca.pem, curl --cacert)
#   ml-node.pem / ml-node-key.pem   the ML node's certificate (localhost, ml-node, 127.0.0.1) and key
# Existing files are kept. Needs the openssl command. For a local stack: a real deployment uses its own CA.
set -euo pipefail
DIR="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/certs}"
mkdir -p "$DIR"
cd "$DIR"
if [ -f ml-node.pem ] && [ -f ml-node-key.pem ] && [ -f root-ca.pem ]; then
  echo "make-certs: $DIR already has root-ca.pem, ml-node.pem and ml-node-key.pem"
  exit 0
fi
KEY=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${KEY[@]}" -keyout root-ca-key.pem -out root-ca.pem -days 825 -subj "/CN=neuralpipe local CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${KEY[@]}" -keyout ml-node-key.pem -out ml-node.csr -subj "/CN=ml-node" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,DNS:ml-node,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" "authorityKeyIdentifier=keyid" > ml-node.ext
openssl x509 -req -in ml-node.csr -CA root-ca.pem -CAkey root-ca-key.pem -CAcreateserial -out ml-node.pem \
  -days 825 -extfile ml-node.ext 2>/dev/null
rm -f ml-node.csr ml-node.ext root-ca.srl
chmod 600 root-ca-key.pem
chmod 644 ml-node-key.pem  # read by the container's user (uid 1000) through the bind mount
echo "make-certs: wrote root-ca.pem, ml-node.pem, ml-node-key.pem in $DIR"
