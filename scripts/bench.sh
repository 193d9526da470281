#!/usr/bin/env bash
# The standard load scenario of issue 6: a development hufud in a temporary directory, then
# `hufu bench` for single Sign, SignBatch of 32, DecryptBatch of 32 and single Sign at half
# the measured maximum (for its p99). Reports land in bench/out/*.json; each gives the
# daemon's CPU per item (read from /proc) beside the raw server step measured in the same
# run. DURATION (default 10s) sets the length of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10s}
port=${PORT:-17443}
out=bench/out
mkdir -p "$out"
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

bin/hufud init -development -data_dir "$dir" >/dev/null
# Decryption is rate-limited per key and a ticket allows 1000 operations: the bench key needs
# far more than a person does.
bin/hufud serve -development -data_dir "$dir" -listen.grpc "127.0.0.1:$port" -admin.listen 127.0.0.1:0 -listen.pki 127.0.0.1:0 -log.level warn \
  -keys.decrypt_per_minute 1000000000 -keys.ticket_uses 2000000000 -account.sms_max_per_source_hour 1000 &
pid=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

hufu() { bin/hufu -addr "127.0.0.1:$port" -daemon-dir "$dir" -home "$dir/cli" "$@"; }
hufu bench -op sign -d "$duration" -daemon-pid "$pid" -json "$out/sign.json" >/dev/null
hufu bench -op sign-batch -batch 32 -d "$duration" -daemon-pid "$pid" -json "$out/sign-batch-32.json" >/dev/null
hufu bench -op decrypt-batch -batch 32 -d "$duration" -daemon-pid "$pid" -json "$out/decrypt-batch-32.json" >/dev/null
half=$(python3 -c "import json;print(json.load(open('$out/sign.json'))['items_per_second']/2)")
hufu bench -op sign -rate "$half" -c 16 -d "$duration" -daemon-pid "$pid" -json "$out/sign-half-rate.json" >/dev/null

printf '%-16s %12s %14s %12s %8s %10s\n' run items/s "daemon µs/item" "raw µs" ratio "p99 ms"
for f in sign sign-batch-32 decrypt-batch-32 sign-half-rate; do
  python3 - "$out/$f.json" "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<16} {r['items_per_second']:12.0f} {r.get('daemon_cpu_us_per_item', 0):14.1f} {r['raw_step_cpu_us']:12.1f} {r.get('ratio_to_raw_step', 0):8.2f} {r['latency_p99_ms']:10.2f}")
PY
done
