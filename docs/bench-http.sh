#!/usr/bin/env bash
# The HTTP benchmark of docs/PERFORMANCE.md: one `scaivault dev` (release build, rate limits
# off), a 1 KiB secret, a service-account token whose policy allows reading it, then wrk with
# 64 keep-alive connections against /v1/health (baseline), authenticated reads (through
# ScaiVault's API and the Vault-compatible one), and writes.
# Needs: wrk (apt-get install wrk). Usage: [ROUNDS=3] [BIN=path] bash docs/bench-http.sh [seconds]
# BIN measures another build (an A/B comparison) instead of building this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=${BIN:-target/release/scaivault}
[ -n "${BIN:-}" ] || cargo build --release -q
port=${PORT:-18399}
url=http://127.0.0.1:$port
out=$(mktemp)
$bin dev --listen 127.0.0.1:$port --no-rate-limit --json >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 50); do [ -s "$out" ] && break; sleep 0.1; done
root=$(python3 -c "import json,sys;print(json.load(open('$out'))['root_token'])")
export SCAIVAULT_URL=$url SCAIVAULT_TOKEN=$root
value=$(head -c 1000 /dev/zero | tr '\0' x)
$bin secrets write bench/secret-0 "value=$value" >/dev/null
$bin identity create sa:bench >/dev/null
$bin policies create bench-reader --rule 'bench/**:read,write' >/dev/null
$bin policies bind bench-reader --identity-id sa:bench >/dev/null
token=$($bin tokens create --identity sa:bench --scope secrets:read,secrets:write --ttl 1h 2>/dev/null)
lua=$(mktemp --suffix .lua)
cat >"$lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = '{"data":{"value":"$value"}}'
  return wrk.format("PUT", "/v1/secrets/bench/w-" .. (counter % 64), {["Authorization"] = "Bearer $token", ["Content-Type"] = "application/json"}, body)
end
LUA
# Health and audited reads alternate for $rounds rounds (ROUNDS=3 for the figures in
# PERFORMANCE.md): run-to-run noise on a shared 2-core machine is ±10 %, so the ratio of each
# round matters more than any single figure.
rounds=${ROUNDS:-1}
rps() { grep "Requests/sec" "$1" | awk '{print $2}'; }
for round in $(seq "$rounds"); do
  echo "== round $round: health (baseline)"
  wrk -t2 -c64 -d"${secs}s" --latency "$url/v1/health" | tee "$out.health" | grep -E "Requests/sec|  50%|  99%|Non-2xx"
  echo "== round $round: authenticated reads of a 1 KiB secret (sa:bench, policy checked, audited)"
  wrk -t2 -c64 -d"${secs}s" --latency -H "Authorization: Bearer $token" "$url/v1/secrets/bench/secret-0" | tee "$out.read" | grep -E "Requests/sec|  50%|  99%|Non-2xx"
  echo "   reads / health: $(python3 -c "print(f'{$(rps "$out.read")/$(rps "$out.health"):.1%}')")"
  echo "== round $round: the same reads through the Vault-compatible API (X-Vault-Token)"
  wrk -t2 -c64 -d"${secs}s" --latency -H "X-Vault-Token: $token" "$url/v1/secret/data/bench/secret-0" | tee "$out.vault" | grep -E "Requests/sec|  50%|  99%|Non-2xx"
  echo "   Vault API reads / reads: $(python3 -c "print(f'{$(rps "$out.vault")/$(rps "$out.read"):.2f}')")"
done
echo "== durable writes of 1 KiB (64 connections)"
wrk -t2 -c64 -d"${secs}s" --latency -s "$lua" "$url" | grep -E "Requests/sec|  50%|  99%|Non-2xx"
