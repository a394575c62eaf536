#!/usr/bin/env bash
# A private CA and the certificates Redis TLS (and a head Prometheus that takes remote writes)
# needs, made with openssl (`bgai tls init`, and scripts/tls-certs that deploy.yml runs on the
# controller when redis_tls is on; tests run it too):
#
#   scripts/tls-certs DIR --server NAME --san IP:10.0.0.1,DNS:head [--client NAME]...
#
# DIR/ca.{crt,key}: the CA (10 years). DIR/NAME.{crt,key} for the server: its certificate for
# exactly the --san names and addresses (a client checks the one it dialled). One
# DIR/clients/NAME.{crt,key} per --client (Redis's tls-auth-clients asks each client for one). EC P-256 keys, mode 0600.
# What exists is kept, so a re-run changes nothing; a server certificate is remade when its --san
# changes, and everything below a CA that is remade. Prints "made FILE" for each file it makes.
set -euo pipefail
umask 077

dir=${1:?usage: tls-certs DIR --server NAME --san SAN [--client NAME]...}
shift
server='' san='' clients=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --server) server=$2; shift ;;
        --san) san=$2; shift ;;
        --client) clients+=("$2"); shift ;;
        *) echo "tls-certs: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -n $server && -n $san ]] || { echo "tls-certs: --server and --san are required" >&2; exit 2; }
for name in "$server" "${clients[@]}"; do
    [[ $name =~ ^[A-Za-z0-9._-]+$ && $name != ca ]] || { echo "tls-certs: bad name '$name'" >&2; exit 2; }
done
mkdir -p "$dir/clients"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

if [[ ! -s $dir/ca.key || ! -s $dir/ca.crt ]]; then
    key "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/CN=bgai Redis CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt"
    find "$dir" -maxdepth 1 -name "*.crt" ! -name ca.crt -delete # what the old CA signed goes:
    rm -f "$dir"/clients/*.crt                                   # every server's, every client's
    echo "made $dir/ca.crt"
fi

# sign NAME USAGE [SAN]: DIR/NAME.crt (and its key), signed by the CA, for serverAuth or clientAuth
sign() {
    local name=$1 usage=$2 alt=${3:-}
    [[ -s $dir/$name.key ]] || { key "$dir/$name.key"; rm -f "$dir/$name.crt"; echo "made $dir/$name.key"; }
    if [[ -n $alt && -s $dir/$name.crt && "$(cat "$dir/$name.san" 2>/dev/null)" != "$alt" ]]; then
        rm -f "$dir/$name.crt"
    fi
    [[ -s $dir/$name.crt ]] && return 0
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$usage"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid,issuer"
        [[ -z $alt ]] || echo "subjectAltName=$alt"
    } >"$tmp/ext"
    openssl req -new -key "$dir/$name.key" -subj "/CN=${name#clients/}" -out "$tmp/csr"
    openssl x509 -req -in "$tmp/csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -CAserial "$dir/ca.srl" -days 825 -sha256 -extfile "$tmp/ext" -out "$dir/$name.crt" 2>/dev/null
    [[ -z $alt ]] || echo "$alt" >"$dir/$name.san"
    echo "made $dir/$name.crt"
}

sign "$server" serverAuth "$san"
for c in "${clients[@]}"; do sign "clients/$c" clientAuth; done
