#!/usr/bin/env bash
# Checks shared by the container tests (scripts/container_test.sh,
# scripts/kube_test.sh), sourced after they define log, fail and
# cli_as (deltaserve-cli against the trainer with only the flags given).

# Secure by default: a call without a token is refused (UNAUTHENTICATED) and
# a plaintext call gets no connection (UNAVAILABLE).
expect_token_and_tls_required() {
  local no_token plaintext
  no_token=$(cli_as --tls_ca_file=/run/secrets/deltaserve/ca.crt info 2>&1) &&
    fail "deltaserve-cli info without a token succeeded: $no_token"
  grep -q UNAUTHENTICATED <<<"$no_token" ||
    fail "info without a token: expected UNAUTHENTICATED, got: $no_token"
  plaintext=$(cli_as --token_file=/run/secrets/deltaserve/token info 2>&1) &&
    fail "deltaserve-cli info over plaintext succeeded: $plaintext"
  grep -q UNAVAILABLE <<<"$plaintext" ||
    fail "info over plaintext: expected UNAVAILABLE, got: $plaintext"
  log "refused: a call without a token (UNAUTHENTICATED) and a plaintext one (UNAVAILABLE)"
}
