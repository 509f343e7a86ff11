#!/usr/bin/env bash
# The Vault-compatible API's read cost next to ScaiVault's own (issue #22, docs/PERFORMANCE.md):
# one `scaivault dev` (release build, rate limits off), a 1 KiB secret, a service-account
# token whose policy allows reading it; then wrk with 64 keep-alive connections alternating
# between `GET /v1/secrets/bench/secret-0` and `GET /v1/secret/data/bench/secret-0` (the same
# audited read, in Vault's shape, the token as X-Vault-Token) for ROUNDS rounds.
# Needs: wrk. Usage: [ROUNDS=3] [BIN=path] bash docs/bench-vault-api.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=${BIN:-target/release/scaivault}
[ -n "${BIN:-}" ] || cargo build --release -q
port=${PORT:-18398}
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
$bin policies create bench-reader --rule 'bench/**:read' >/dev/null
$bin policies bind bench-reader --identity-id sa:bench >/dev/null
token=$($bin tokens create --identity sa:bench --scope secrets:read --ttl 1h 2>/dev/null)
rps() { grep "Requests/sec" "$1" | awk '{print $2}'; }
tmp=$(mktemp)
echo "machine: $(nproc) cores; wrk -t2 -c64 -d${secs}s; rounds: ${ROUNDS:-3}"
echo "| round | ScaiVault API reads/s | Vault API reads/s | Vault / ScaiVault |"
echo "|---|---|---|---|"
for round in $(seq "${ROUNDS:-3}"); do
  wrk -t2 -c64 -d"${secs}s" -H "Authorization: Bearer $token" "$url/v1/secrets/bench/secret-0" >"$tmp"
  grep -q "Non-2xx" "$tmp" && { cat "$tmp"; exit 1; }
  sv=$(rps "$tmp")
  wrk -t2 -c64 -d"${secs}s" -H "X-Vault-Token: $token" "$url/v1/secret/data/bench/secret-0" >"$tmp"
  grep -q "Non-2xx" "$tmp" && { cat "$tmp"; exit 1; }
  va=$(rps "$tmp")
  python3 -c "print(f'| $round | {round($sv)} | {round($va)} | {$va/$sv:.2f} |')"
done
