#!/usr/bin/env bash
# The standard load scenario (issues 6 and 18): a development hufud in a temporary directory,
# then `hufu bench`: single Sign and Decrypt swept over concurrency 1, 4, 16, 64 (SWEEP), the
# same sweep of a health check (the floor of any call), SignBatch and DecryptBatch of 32, and
# single Sign at half the measured maximum (for its p99). Reports land in bench/out/*.json;
# each gives the daemon's CPU per item (read from /proc) beside the raw server step measured
# in the same run, its WAL syncs and allocations per item (from /metrics) and the per-call
# overhead. DURATION (default 10s) sets the length of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10s}
port=${PORT:-17443}
out=bench/out
mkdir -p "$out"
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

# A metrics_reader token lets the bench read WAL syncs and allocations from /metrics.
token=$(bin/hufud admin-token --role metrics_reader --name bench)
printf '%s\n' "$(echo "$token" | sed -n 2p | tr -d ' ')" >"$dir/token" && chmod 600 "$dir/token"
cat >"$dir/hufu.yaml" <<YAML
admin:
  listen: 127.0.0.1:$((port + 1))
  tokens:
    - name: bench
      role: metrics_reader
      sha256: $(echo "$token" | awk '/sha256:/ {print $2}')
YAML

bin/hufud init -development -data_dir "$dir" >/dev/null
# Decryption is rate-limited per key and a ticket allows 1000 operations: the bench key needs
# far more than a person does.
bin/hufud serve -config "$dir/hufu.yaml" -development -data_dir "$dir" -listen.grpc "127.0.0.1:$port" -listen.pki 127.0.0.1:0 -listen.json 127.0.0.1:0 -log.level warn \
  -keys.decrypt_per_minute 1000000000 -keys.ticket_uses 2000000000 -account.sms_max_per_source_hour 1000 &
pid=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

hufu() {
  bin/hufu -addr "127.0.0.1:$port" -daemon-dir "$dir" -home "$dir/cli" "$@" \
    -daemon-pid "$pid" -admin-url "http://127.0.0.1:$((port + 1))" -token-file "$dir/token"
}
# The concurrency sweep of issue 18 for single calls, then the batches, then single Sign at
# half its measured maximum (for its p99).
sweep=${SWEEP:-1,4,16,64}
hufu bench -op sign -c "$sweep" -d "$duration" -json "$out/sign.json"
hufu bench -op decrypt -c "$sweep" -d "$duration" -json "$out/decrypt.json"
# The floor under both: a health check crosses the same TLS, HTTP/2 and interceptors, with
# no caller to authenticate and no work; what a call costs above it, its step and its sync
# is ours.
hufu bench -op health -c "$sweep" -d "$duration" -json "$out/health.json"
hufu bench -op sign-batch -batch 32 -c 4 -d "$duration" -json "$out/sign-batch-32.json" >/dev/null
hufu bench -op decrypt-batch -batch 32 -c 4 -d "$duration" -json "$out/decrypt-batch-32.json" >/dev/null
half=$(python3 -c "import json;print(max(r['items_per_second'] for r in json.load(open('$out/sign.json')))/2)")
hufu bench -op sign -rate "$half" -c 16 -d "$duration" -json "$out/sign-half-rate.json" >/dev/null

echo
printf '%-16s %10s %9s %8s %7s %8s %9s %9s %8s\n' run items/s "cpu µs" "raw µs" ratio ratio·all overhead "allocs" "p99 ms"
for f in sign-batch-32 decrypt-batch-32 sign-half-rate; do
  python3 - "$out/$f.json" "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<16} {r['items_per_second']:10.0f} {r.get('daemon_cpu_us_per_item', 0):9.1f} {r['raw_step_cpu_us']:8.1f} {r.get('ratio_to_raw_step', 0):7.2f} {r.get('ratio_to_raw_step_all_cores', 0):8.2f} {r.get('overhead_us_per_item', 0):9.1f} {r.get('daemon_allocs_per_item', 0):8.0f} {r['latency_p99_ms']:8.2f}")
PY
done
