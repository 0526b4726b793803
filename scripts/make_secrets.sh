#!/usr/bin/env bash
# Makes what a secure deltaserve deployment needs (docs/security.md), with
# the openssl command only:
#
#   bash scripts/make_secrets.sh DIR [EXTRA_DNS_NAME...]
#
#   DIR/ca.key              the CA's private key: keep it offline; only needed
#                           to issue more certificates
#   DIR/trainer/ca.crt      the CA certificate (clients verify the server with it)
#   DIR/trainer/tls.crt     the server's certificate (ECDSA P-256, 1 year) for
#                           localhost, 127.0.0.1, ::1, trainer, deltaserve,
#                           deltaserve.default.svc[.cluster.local] and EXTRA_DNS_NAMEs
#   DIR/trainer/tls.key     its private key
#   DIR/trainer/auth.textproto   the --auth_file: principals simulator
#                           (SIMULATOR), observer (OBSERVER), admin (ADMIN),
#                           as SHA-256 digests of their tokens
#   DIR/simulator/ca.crt, DIR/simulator/token   what a simulator mounts
#   DIR/observer.token, DIR/admin.token         the other tokens
#
# DIR/trainer and DIR/simulator are what the trainer and the simulators
# mount (docker/compose.yaml uses docker/secrets, docker/k8s/kustomization.yaml
# docker/k8s/secrets). Files are mode 0644 inside 0700 directories: the
# containers run as uid 10001 and must read them through bind mounts. Refuses
# to overwrite an existing DIR/trainer (rotate on purpose, see docs/security.md).
set -euo pipefail

dir=${1:?usage: make_secrets.sh DIR [EXTRA_DNS_NAME...]}
shift
if [[ -e $dir/trainer ]]; then
  echo "make_secrets: $dir/trainer exists; remove it first to make new secrets" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "make_secrets: openssl not installed (apt-get install openssl)" >&2; exit 2; }
mkdir -p "$dir/trainer" "$dir/simulator"
chmod 700 "$dir"
umask 022

san="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:trainer,DNS:deltaserve"
san+=",DNS:deltaserve.default.svc,DNS:deltaserve.default.svc.cluster.local"
for name in "$@"; do san+=",DNS:$name"; done
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 "${ec[@]}" -days 3650 -subj /CN=deltaserve-ca \
  -keyout "$dir/ca.key" -out "$dir/trainer/ca.crt" 2>/dev/null
chmod 600 "$dir/ca.key"
openssl req -new "${ec[@]}" -subj /CN=deltaserve -keyout "$dir/trainer/tls.key" \
  -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$work/ext"
openssl x509 -req -days 365 -in "$work/tls.csr" -CA "$dir/trainer/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -CAserial "$work/ca.srl" -extfile "$work/ext" -out "$dir/trainer/tls.crt" 2>/dev/null
cp "$dir/trainer/ca.crt" "$dir/simulator/ca.crt"

: >"$dir/trainer/auth.textproto"
for entry in simulator:SIMULATOR observer:OBSERVER admin:ADMIN; do
  name=${entry%%:*}
  role=${entry#*:}
  token=$(openssl rand -hex 32)
  digest=$(printf '%s' "$token" | openssl dgst -sha256 -r | cut -d' ' -f1)
  printf 'principals { name: "%s" role: %s token_sha256: "%s" }\n' "$name" "$role" "$digest" \
    >>"$dir/trainer/auth.textproto"
  if [[ $name == simulator ]]; then
    printf '%s\n' "$token" >"$dir/simulator/token"
  else
    printf '%s\n' "$token" >"$dir/$name.token"
  fi
done
chmod 644 "$dir"/trainer/* "$dir"/simulator/*
echo "make_secrets: wrote $dir (server names: $san)" >&2
