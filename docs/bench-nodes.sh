#!/usr/bin/env bash
# The several-nodes benchmark of docs/PERFORMANCE.md: audited reads and durable writes of a
# 1 KiB secret by a service account, with the same wrk parameters against
#   (1) a vault file served by one node,
#   (2) a vault on PostgreSQL served by one node,
#   (3) the same vault served by two nodes.
# Load is two wrk processes of 32 connections each (against the one node twice, or one per
# node), summed. Everything runs on this machine: PostgreSQL, the nodes and wrk share its
# cores, so the two-node figure shows the cost of coordination, not added capacity.
# Needs: wrk, PostgreSQL's server binaries (initdb, pg_ctl). Run as root or as a user that
# may run initdb. Usage: [BIN=path] bash docs/bench-nodes.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=${BIN:-target/release/scaivault}
[ -n "${BIN:-}" ] || cargo build --release -q
bin=$(realpath "$bin")
pgbin=$(dirname "$(compgen -G "/usr/lib/postgresql/*/bin/initdb" | sort | tail -1)")
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pgport=$((20000 + RANDOM % 10000))
echo benchpw >"$work/pw"
mkdir "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg" "$work/pw"
as_pg "$pgbin/initdb" -D "$work/pg" -U admin --auth=scram-sha-256 --pwfile="$work/pw" >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1" -w -l "$work/pg/log" start >/dev/null
storage="postgresql://admin:benchpw@127.0.0.1:$pgport/postgres"
export SCAIVAULT_PASSPHRASE=bench-passphrase-0123456789

# A node on `$1` (file or connection string), listening on port `$2`.
node() {
  SCAIVAULT_STORAGE="$1" env -u SCAIVAULT_VAULT "$bin" server --listen "127.0.0.1:$2" --no-rate-limit \
    >/dev/null 2>"$work/node-$2.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/v1/health" >/dev/null && return; sleep 0.1; done
  echo "node on $2 did not start:"; cat "$work/node-$2.log"; exit 1
}

value=$(head -c 1000 /dev/zero | tr '\0' x)
# Sets up the secret, the service account and its token on the vault behind `$1`.
setup() {
  local url=$1 root=$2
  export SCAIVAULT_URL=$url SCAIVAULT_TOKEN=$root
  "$bin" secrets write bench/secret-0 "value=$value" >/dev/null
  "$bin" identity create sa:bench >/dev/null
  "$bin" policies create bench-reader --rule 'bench/**:read,write' >/dev/null
  "$bin" policies bind bench-reader --identity-id sa:bench >/dev/null
  "$bin" tokens create --identity sa:bench --scope secrets:read,secrets:write --ttl 1h 2>/dev/null
}

lua() {
  cat >"$work/w-$1.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = '{"data":{"value":"$value"}}'
  return wrk.format("PUT", "/v1/secrets/bench/w$1-" .. (counter % 32), {["Authorization"] = "Bearer $token", ["Content-Type"] = "application/json"}, body)
end
LUA
}

rps() { grep "Requests/sec" "$1" | awk '{print $2}'; }
# Two wrk processes at once against `$2` and `$3`; prints the summed requests per second.
load() {
  local kind=$1 a=$2 b=$3
  if [ "$kind" = read ]; then
    wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $token" "$a/v1/secrets/bench/secret-0" >"$work/a" &
    local first=$!
    wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $token" "$b/v1/secrets/bench/secret-0" >"$work/b"
  else
    lua a; lua b
    wrk -t1 -c32 -d"${secs}s" -s "$work/w-a.lua" "$a" >"$work/a" &
    local first=$!
    wrk -t1 -c32 -d"${secs}s" -s "$work/w-b.lua" "$b" >"$work/b"
  fi
  wait "$first"
  for f in "$work/a" "$work/b"; do
    if grep -q "Non-2xx" "$f"; then echo "errors in a run:"; cat "$f"; exit 1; fi
  done
  python3 -c "print(round($(rps "$work/a") + $(rps "$work/b")))"
}

init() {
  SCAIVAULT_STORAGE="$1" env -u SCAIVAULT_VAULT "$bin" init --json --kdf-memory-mib 19 --kdf-passes 2 |
    python3 -c "import json,sys;print(json.load(sys.stdin)['root_token'])"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'); wrk 2×32 connections, ${secs}s each"

root=$(init "$work/vault.db")
node "$work/vault.db" 18401
token=$(setup http://127.0.0.1:18401 "$root")
f_read=$(load read http://127.0.0.1:18401 http://127.0.0.1:18401)
f_write=$(load write http://127.0.0.1:18401 http://127.0.0.1:18401)
kill "${pids[-1]}"

root=$(init "$storage")
node "$storage" 18402
token=$(setup http://127.0.0.1:18402 "$root")
p1_read=$(load read http://127.0.0.1:18402 http://127.0.0.1:18402)
p1_write=$(load write http://127.0.0.1:18402 http://127.0.0.1:18402)
node "$storage" 18403
p2_read=$(load read http://127.0.0.1:18402 http://127.0.0.1:18403)
p2_write=$(load write http://127.0.0.1:18402 http://127.0.0.1:18403)

printf '\n| vault | audited reads/s | durable writes/s |\n|---|---|---|\n'
printf '| file, one node | %s | %s |\n' "$f_read" "$f_write"
printf '| PostgreSQL, one node | %s | %s |\n' "$p1_read" "$p1_write"
printf '| PostgreSQL, two nodes | %s | %s |\n' "$p2_read" "$p2_write"
python3 -c "print(f'two nodes / one node: reads {$p2_read/$p1_read:.2f}x, writes {$p2_write/$p1_write:.2f}x; PostgreSQL one node / file: reads {$p1_read/$f_read:.2f}x, writes {$p1_write/$f_write:.2f}x')"
