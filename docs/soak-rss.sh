#!/usr/bin/env bash
# The memory soak of docs/RELIABILITY.md: one release `scaivault dev` (rate limits off) under
# alternating 10 s rounds of audited reads and 1 KiB writes (`scaivault bench http`, 32
# connections) with a listing after each, printing the server's RSS after every round.
# Usage: [BIN=path] [EXTRA="--cache-mib 8"] bash docs/soak-rss.sh [seconds, default 180]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/scaivault}; secs=${1:-180}; port=${PORT:-18500}; url=http://127.0.0.1:$port
[ -n "${BIN:-}" ] || cargo build --release -q
out=$(mktemp); $bin dev --listen 127.0.0.1:$port --no-rate-limit --json ${EXTRA:-} >"$out" 2>/dev/null & pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 50); do [ -s "$out" ] && break; sleep 0.1; done
root=$(python3 -c "import json;print(json.load(open('$out'))['root_token'])")
export SCAIVAULT_URL=$url SCAIVAULT_TOKEN=$root
v=$(head -c 1000 /dev/zero | tr '\0' x)
$bin secrets write bench/secret-0 "value=$v" >/dev/null
rss() { awk '/VmRSS/{printf "%.0f", $2/1024}' /proc/$pid/status; }
echo "start rss=$(rss)"
end=$((SECONDS+secs)); n=0
while [ $SECONDS -lt $end ]; do
  n=$((n+1)); mode=$([ $((n%2)) = 0 ] && echo write || echo read)
  $bin bench http --url $url --connections 32 --seconds 10 --mode $mode --path bench/secret-0 >/dev/null 2>&1 || true
  $bin secrets list bench/ >/dev/null 2>&1 || true
  echo "t=$((SECONDS)) $mode rss=$(rss)"
done
