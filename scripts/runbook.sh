#!/usr/bin/env bash
# The operator's runbook (docs/operations.md), run as an operator would with the built
# binaries against a real hufud: validate (a production configuration lacking its providers
# is refused with exit 78), init, serve, health, readiness, admin tokens (online creation, a
# metrics_reader scrape, revocation), a desk grant approved by a second security officer,
# KEK rotation and finish, SIGHUP, an encrypted backup, a graceful stop, the offline restore
# through the HSM (hufud restore) into a fresh data directory, refused until acknowledged
# (hufud acknowledge-restore), and the audit log verified
# against the key kept from installation, before and after the restore. The appliance is a
# development one (SoftHSM2 in the data directory); everything else is as in production.
# make test runs it after `make bins`; it needs bash and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
HUFUD=${HUFUD:-bin/hufud}
HUFU_BIN=${HUFU_BIN:-bin/hufu}
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "runbook: FAIL: $*" >&2; [ -f "$work/serve.log" ] && tail -20 "$work/serve.log" >&2; exit 1; }
step() { echo "runbook: $*"; }

# shellcheck source=scripts/port.sh
. scripts/port.sh # the scripts run from the repository root (cd above)
grpc_port=$(port)
admin_port=$(port)
# The JSON gateway and the PKI listener too, or development's 7444 and 7081 would clash with
# a `make run` on the same machine.
json_port=$(port)
pki_port=$(port)
admin_url="http://127.0.0.1:$admin_port"

# Install: bootstrap tokens for two security officers and an auditor (hufud admin-token).
token_lines=
for who in sam:security_officer sue:security_officer alice:auditor; do
  name=${who%%:*}
  "$HUFUD" admin-token -name "$name" -role "${who#*:}" >"$work/$name.out"
  grep -o 'hufu_admin_[A-Za-z0-9_-]*' "$work/$name.out" >"$work/$name.token"
  chmod 600 "$work/$name.token"
  token_lines+=$(sed -n '/^    - name:/,$p' "$work/$name.out")$'\n'
done

write_config() { # data_dir
  cat >"$work/hufu.yaml" <<EOF
development: true
data_dir: $1
listen:
  grpc: 127.0.0.1:$grpc_port
  json: 127.0.0.1:$json_port
  pki: 127.0.0.1:$pki_port
admin:
  listen: 127.0.0.1:$admin_port
  tokens:
$token_lines
EOF
}

step "validate: a production configuration without providers is refused with exit 78"
printf 'data_dir: %s/prod\n' "$work" >"$work/prod.yaml"
set +e
"$HUFUD" validate -config "$work/prod.yaml" >"$work/validate.out" 2>&1
code=$?
set -e
[ "$code" = 78 ] || fail "validate of a production configuration exited $code, want 78"
grep -q 'providers.sms: must be set outside development' "$work/validate.out" || fail "validate did not name providers.sms"

step "version: the binaries carry what make bins stamped (git describe)"
if describe=$(git describe --always --dirty 2>/dev/null); then
  for b in "$HUFUD" "$HUFU_BIN"; do
    "$b" version | grep -q "^$(basename "$b") version $describe, revision $(git rev-parse HEAD)" ||
      fail "$b version: $("$b" version), want version $describe"
  done
fi

step "init and validate"
write_config "$work/data"
"$HUFUD" init -config "$work/hufu.yaml" >/dev/null
"$HUFUD" validate -config "$work/hufu.yaml" | grep -q 'configuration is valid (development)' || fail validate

start() {
  "$HUFUD" serve -config "$work/hufu.yaml" -log.format text >>"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    "$HUFUD" health -url "$admin_url/readyz" -timeout 1s >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || fail "hufud serve exited"
    sleep 0.2
  done
  fail "hufud did not become ready"
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || fail "hufud serve did not exit 0 on SIGTERM"
  pid=
}

admin() { # token-name args...
  local who=$1
  shift
  HUFU_ADMIN_URL=$admin_url HUFU_ADMIN_TOKEN_FILE="$work/$who.token" "$HUFU_BIN" admin "$@"
}
hufu() { "$HUFU_BIN" -addr "127.0.0.1:$grpc_port" -daemon-dir "$work/data" -home "$work/cli" "$@"; }

step "serve; health; readiness"
start
"$HUFU_BIN" admin ready -admin-url "$admin_url" | grep -q '^ok$' || fail "admin ready"

step "the audit public key, kept from installation"
admin alice audit public-key -o "$work/audit.pem" >/dev/null

step "some use: a person signs in"
hufu login -phone 13800138000 >/dev/null

step "an online metrics_reader token scrapes; it can do nothing else"
admin sam token create -name prometheus -role metrics_reader -expires-in 24h -out "$work/prometheus.token" >/dev/null
admin prometheus metrics | grep -q '^hufu_build_info' || fail "metrics_reader scrape"
set +e
admin prometheus token list >/dev/null 2>&1
code=$?
set -e
[ "$code" = 3 ] || fail "a metrics_reader listing tokens exited $code, want 3"

step "revocation is immediate"
admin sam token revoke prometheus >/dev/null
set +e
admin prometheus metrics >/dev/null 2>&1
code=$?
set -e
[ "$code" = 3 ] || fail "a revoked token exited $code, want 3"

step "a desk grant waits for the second security officer"
admin sam system-client register review-desk -service ReviewService -cert-out "$work/desk.pem" -key-out "$work/desk-key.pem" >"$work/register.out" 2>&1
id=$(admin sue approval list -state pending -o json | jq -r '.approvals[0].id')
set +e
admin sam approval approve "$id" >/dev/null 2>&1
code=$?
set -e
[ "$code" != 0 ] || fail "the officer who asked approved his own request"
admin sue approval approve "$id" -cert-out "$work/desk.pem" -key-out "$work/desk-key.pem" >/dev/null
admin sam system-client list | grep -q review-desk || fail "review-desk not registered"
hufu -tls-cert "$work/desk.pem" -tls-key "$work/desk-key.pem" review list >/dev/null || fail "the approved desk cannot call the review desk"

step "KEK rotation and finish"
admin sam kek rotate -wait >/dev/null 2>&1
admin sam kek finish -yes >/dev/null 2>&1
admin sam kek status -o json | jq -e '(.keks | length) == 1 and .keks[0].version == 2' >/dev/null || fail "KEK versions after the finish"

step "SIGHUP reloads the TLS material"
kill -HUP "$pid"
for _ in $(seq 50); do grep -q 'TLS material reloaded' "$work/serve.log" && break; sleep 0.1; done
grep -q 'TLS material reloaded' "$work/serve.log" || fail "no reload after SIGHUP"

step "backup, after the finish (an older one would need the destroyed KEK); encrypted, no phone number in clear"
out=$(admin sam backup -o "$work/backup.hufubak")
grep -q 'encrypted under a data key wrapped by hufu-kek-v2' <<<"$out" || fail "backup not encrypted under the current KEK: $out"
! grep -q 13800138000 "$work/backup.hufubak" || fail "the backup shows a phone number in clear"
admin alice audit verify -key "$work/audit.pem" >/dev/null || fail "audit verify before the restore"
stop

step "restore into a fresh data directory with the same HSM token and TLS material"
mkdir -p "$work/restored"
cp -a "$work/data/softhsm" "$work/data/tls" "$work/restored/"
write_config "$work/restored"
"$HUFUD" restore -config "$work/hufu.yaml" -in "$work/backup.hufubak" -operator runbook >/dev/null
# The HSM's audit anchor is past the backup (the stop checkpointed after it): refused with 65
# until an operator acknowledges the restore.
rc=0; "$HUFUD" serve -config "$work/hufu.yaml" -log.format text >>"$work/serve.log" 2>&1 || rc=$?
[ "$rc" = 65 ] || fail "a restored store behind the HSM's anchor was served (exit $rc, want 65)"
"$HUFUD" acknowledge-restore -config "$work/hufu.yaml" -operator runbook >/dev/null || fail "acknowledge-restore"
start
hufu whoami >/dev/null || fail "the session of before the backup does not work on the restored store"
admin sam system-client list | grep -q review-desk || fail "the restored store lost review-desk"
admin alice audit verify -key "$work/audit.pem" -export "$work/restored.jsonl" >/dev/null || fail "audit verify after the restore"
grep -q '"action":"store.restore.acknowledge"' "$work/restored.jsonl" || fail "the restored log lacks the acknowledgement"
stop
step "ok"
