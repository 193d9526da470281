#!/usr/bin/env bash
# The README's JSON walk-through ("The same over JSON/HTTP"), run as written: its sh blocks
# are read from README.md and each command is run in turn, in one shell, from a directory
# laid out as a new user's checkout after `make run` (bin/, .hufu/), against a development
# appliance started as `make run` starts it (hufud init -development, hufud serve
# -development). The one change to the text: the appliance listens on free ports, so
# `J=https://localhost:7444` gets the JSON port it listens on (the CLI finds the gRPC port
# in HUFU_ADDR). Before the walk-through, the quick start's certificate is made with the CLI
# (sign-in, identity, a split key, an application approved at the review desk and paid);
# after it, each command's answer is checked with jq: the title of the OpenAPI document, the
# session created, read and watched as chunked JSON to SESSION_STATE_COMPLETED, the phone's
# answer, the resolved session read back with the binding to the certificate, the 400 naming
# the field and the 401 without a client certificate. Besides, the OpenAPI document served
# must be api/openapi/hufu.swagger.json byte for byte. make test runs it after the runbook;
# it needs bash, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
HUFUD=$(realpath "${HUFUD:-bin/hufud}")
HUFU_BIN=$(realpath "${HUFU_BIN:-bin/hufu}")
started=$SECONDS
work=$(mktemp -d)
pid=
bg=()
cleanup() {
  for p in "${bg[@]}"; do kill $(pgrep -P "$p") "$p" 2>/dev/null || true; done
  if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "json-walkthrough: FAIL: $*" >&2; [ -f "$work/serve.log" ] && tail -20 "$work/serve.log" >&2; exit 1; }
step() { echo "json-walkthrough: [$((SECONDS - started))s] $*"; }
for tool in curl jq; do
  command -v "$tool" >/dev/null || fail "$tool not found; the walk-through uses it (apt-get install $tool)"
done

# shellcheck source=scripts/port.sh
. scripts/port.sh # the scripts run from the repository root (cd above)

# The README's sh blocks under "### The same over JSON/HTTP", up to the next heading.
readme=$(awk '/^### The same over JSON\/HTTP/ { on = 1; next }
  on && !block && /^#/ { exit }
  on && /^```sh$/ { block = 1; next }
  on && /^```$/ { block = 0; next }
  on && block' README.md)
[ -n "$readme" ] || fail "README.md has no sh block under \"### The same over JSON/HTTP\""
grep -qx 'J=https://localhost:7444' <<<"$readme" || fail "README.md's walk-through does not set J=https://localhost:7444"

# A new user's directory: the binaries in bin/, the appliance's data in .hufu/. No HUFU_*
# variable of the caller's reaches it but the SoftHSM2 module's location.
unset $(compgen -e | grep '^HUFU_' | grep -vx HUFU_PKCS11_MODULE) || true
mkdir -p "$work/walk/bin"
ln -s "$HUFUD" "$work/walk/bin/hufud"
ln -s "$HUFU_BIN" "$work/walk/bin/hufu"
cd "$work/walk"
grpc_port=$(port)
json_port=$(port)
export HUFU_LISTEN_GRPC=127.0.0.1:$grpc_port HUFU_LISTEN_JSON=127.0.0.1:$json_port
export HUFU_LISTEN_PKI=127.0.0.1:$(port) HUFU_ADMIN_LISTEN=127.0.0.1:$(port)
export HUFU_ADDR=127.0.0.1:$grpc_port HUFU_HOME=$work/home

step "a development appliance, as make run starts it"
bin/hufud init -development >"$work/init.out" 2>&1 || fail "hufud init -development: $(tail -3 "$work/init.out")"
bin/hufud serve -development -log.format text >"$work/serve.log" 2>&1 &
pid=$!
disown "$pid" # the README's `wait` waits for its watch, not for the appliance
for _ in $(seq 100); do
  grep -q 'msg=ready' "$work/serve.log" && break
  kill -0 "$pid" 2>/dev/null || fail "hufud serve exited"
  sleep 0.1
done
grep -q 'msg=ready' "$work/serve.log" || fail "hufud did not become ready"

step "the quick start's certificate, with the CLI"
rp() { bin/hufu -tls-cert .hufu/tls/cli.pem -tls-key .hufu/tls/cli-key.pem "$@"; }
{
  bin/hufu login -phone 13800138000
  bin/hufu platform use demo
  bin/hufu verify-identity cfca -name 张三 -id 11010519491231002X
  bin/hufu key new -label "bids 2026" -pin 246810
} >"$work/setup.out" 2>&1 || fail "quick start: $(tail -3 "$work/setup.out")"
key=$(bin/hufu key list -o json | jq -r '.keys[0].id')
echo "授权委托书" >letter.txt
HUFU_PIN=246810 bin/hufu cert apply -key "$key" -years 2 -sign-letter letter.txt >>"$work/setup.out" 2>&1 || fail "cert apply: $(tail -3 "$work/setup.out")"
order=$(bin/hufu cert orders -o json | jq -r '.orders[0].id')
rp review approve "$order" -reason 材料齐全 >>"$work/setup.out" 2>&1 || fail "review approve: $(tail -3 "$work/setup.out")"
bin/hufu cert pay "$order" >>"$work/setup.out" 2>&1 || fail "cert pay: $(tail -3 "$work/setup.out")"
serial=$(bin/hufu cert list -o json | jq -r '.certificates[] | select(.usage == "CERTIFICATE_USAGE_SIGNING") | .serial')
[ -n "$serial" ] || fail "no signing certificate after the quick start"

step "the README's commands"
# Each command (a line, or lines up to where bash reads a whole command) runs with eval in
# this shell, so its variables last; its output goes to out.N, the command to cmds[N]. A
# command sent to the background is killed after 30s, so that a watch that never ends
# fails the run instead of hanging it (the killer is disowned: `wait` does not wait for it).
n=0
acc=
cmds=()
while IFS= read -r line; do
  if [ -z "$acc" ] && { [ -z "$line" ] || [[ $line == \#* ]]; }; then continue; fi
  acc+=${acc:+$'\n'}$line
  bash -n <<<"$acc" 2>/dev/null || continue
  cmd=${acc//localhost:7444/localhost:$json_port}
  acc=
  n=$((n + 1))
  cmds[n]=$cmd
  last=$!
  eval "$cmd" </dev/null >"$work/out.$n" 2>"$work/err.$n" || fail "README command $n exited $?: $cmd: $(cat "$work/err.$n")"
  if [ "$!" != "$last" ]; then
    bg+=("$!")
    (sleep 30; kill "${bg[-1]}") >/dev/null 2>&1 &
    bg+=("$!")
    disown "$!"
  fi
done <<<"$readme"
[ -z "$acc" ] || fail "README.md's walk-through ends inside a command: $acc"

# out 'TEXT': the output of the one command whose text holds TEXT.
out() {
  local i found=
  for i in "${!cmds[@]}"; do
    if [[ ${cmds[i]} == *"$1"* ]]; then
      [ -z "$found" ] || fail "more than one README command holds $1"
      found=$work/out.$i
    fi
  done
  [ -n "$found" ] || fail "no README command holds $1"
  cat "$found"
}

step "checks"
[ "$(out '/openapi.json')" = "hufu JSON/HTTP API" ] || fail "the OpenAPI title: $(out '/openapi.json')"
out '"request_id":"json-bind-0001"' | jq -e '.session | .kind == "SESSION_KIND_BIND" and .state == "SESSION_STATE_CREATED"
  and .platform_id == "demo" and .reference == "user-42" and (.qr_payload | startswith("HUFU1.SCAN."))' >/dev/null ||
  fail "the session created: $(out '"request_id":"json-bind-0001"')"
id=$(jq -r .session.id session.json)
out '# the session now' | jq -se --arg id "$id" 'length == 1 and .[0].session.id == $id' >/dev/null ||
  fail "the session read: $(out '# the session now')"
out '/watch' | jq -se --arg id "$id" 'length >= 1 and all(.[]; .result.session.id == $id)
  and .[-1].result.session.state == "SESSION_STATE_COMPLETED"' >/dev/null || fail "the watch: $(out '/watch')"
out 'bin/hufu scan' | grep -q "^answered with certificate $serial: bind completed$" || fail "the phone's answer: $(out 'bin/hufu scan')"
out '.result.binding' | jq -e --arg s "$serial" '.state == "SESSION_STATE_COMPLETED" and .certificate_serial == $s
  and .binding.reference == "user-42" and .binding.certificate_serial == $s' >/dev/null ||
  fail "the resolved session: $(out '.result.binding')"
bad=$(out '"request_id":"json-bind-0002"')
[ "$(tail -1 <<<"$bad")" = 400 ] || fail "bad input answered $(tail -1 <<<"$bad"), want 400"
head -1 <<<"$bad" | jq -e '.code == 3 and (.message | startswith("subject.id_number: "))
  and .details[0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
  and .details[0].field_violations[0].field == "subject.id_number"' >/dev/null || fail "bad input: $bad"
nocert=$(out 'curl -sS --cacert .hufu/tls/ca.pem -w')
[ "$(tail -1 <<<"$nocert")" = 401 ] || fail "a call without a client certificate answered $(tail -1 <<<"$nocert"), want 401"
head -1 <<<"$nocert" | jq -e '.code == 16' >/dev/null || fail "a call without a client certificate: $nocert"

step "the OpenAPI document served is api/openapi/hufu.swagger.json; the watch is chunked"
$CURL "$J/openapi.json" | cmp -s - "$repo/api/openapi/hufu.swagger.json" || fail "the OpenAPI document served differs from api/openapi/hufu.swagger.json"
$CURL --http1.1 -N -D "$work/watch.headers" -o /dev/null "$J/v1/scan/sessions/$ID/watch" || fail "the watch of the completed session"
grep -qi '^transfer-encoding: chunked' "$work/watch.headers" || fail "the watch is not chunked: $(cat "$work/watch.headers")"
step "ok ($n commands, $((SECONDS - started))s)"
