#!/usr/bin/env bash
# The .env migration, end to end, against a fresh `scaivault dev`:
# three services' .env.production files → one fleet import (with a mapping that groups the
# Salesforce credentials and leaves public settings in the environment) → a service account and
# a narrow policy per service → the billing service reading through the Python SDK with an env
# fallback → the audit log showing its reads → rotation, and (when PostgreSQL's server binaries
# are installed) a rotation that changes the billing role's password on a real local database.
#
# Needs: the scaivault binary (SCAIVAULT_BIN or on PATH), python3 with scaivault-sdk installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SCAIVAULT_BIN:-scaivault}
work=$(mktemp -d)
pg_stop() { [ -n "${pg_ctl:-}" ] && $as_pg "$pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; }
trap 'kill "${dev_pid:-}" 2>/dev/null || true; pg_stop; rm -rf "$work" "${pgdir:-}"' EXIT
say() { printf '\n== %s\n' "$*"; }
check() { if ! eval "$1"; then echo "CHECK FAILED: $1" >&2; exit 1; fi; }

# A throwaway PostgreSQL, if its server binaries are here, standing in for the billing database.
allow=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then
  say "a local PostgreSQL for the rotation part"
  pgdir=$(mktemp -d); as_pg=""
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" = 0 ]; then as_pg="runuser -u postgres --"; chown postgres: "$pgdir"; fi
  pgport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  echo "pg-admin-pass" >"$pgdir/pw"; chmod 644 "$pgdir/pw"
  $as_pg "$pg_bin/initdb" -D "$pgdir/data" -U admin --auth=scram-sha-256 --pwfile="$pgdir/pw" >/dev/null
  pg_ctl="$pg_bin/pg_ctl"
  $as_pg "$pg_ctl" -D "$pgdir/data" -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1" -w -l "$pgdir/log" start >/dev/null
  PGPASSWORD=pg-admin-pass "$pg_bin/psql" -h 127.0.0.1 -p "$pgport" -U admin -d postgres -qc "CREATE ROLE billing LOGIN PASSWORD 'b1ll1ng'"
  allow=(--allow-host "127.0.0.1:$pgport")
fi

say "start a dev vault"
"$bin" dev --listen 127.0.0.1:0 --json "${allow[@]}" >"$work/dev.json" 2>/dev/null &
dev_pid=$!
for _ in $(seq 100); do [ -s "$work/dev.json" ] && break; sleep 0.05; done
SCAIVAULT_URL=$(python3 -c "import json;print(json.load(open('$work/dev.json'))['url'])")
SCAIVAULT_TOKEN=$(python3 -c "import json;print(json.load(open('$work/dev.json'))['root_token'])")
export SCAIVAULT_URL SCAIVAULT_TOKEN HOME="$work"

say "the .env files the services use today (services/*/.env.production, next to this script)"
cp -R "$here/services" "$here/mapping.json" "$work/"
find "$work/services" -type f | sort

say "import the fleet: plan first, then for real, then again (nothing changes)"
"$bin" import dotenv --fleet "$work/services" --mapping "$work/mapping.json" --dry-run
"$bin" import dotenv --fleet "$work/services" --mapping "$work/mapping.json"
again=$("$bin" import dotenv --fleet "$work/services" --mapping "$work/mapping.json" --json)
check "[ \"\$(python3 -c 'import json,sys;d=json.loads(sys.argv[1]);print(d[\"create\"]+d[\"new_version\"])' '$again')\" = 0 ]"
"$bin" secrets list --prefix environments/production/

say "a service account and a narrow policy per service"
for svc in billing reporting notifications; do
  "$bin" identity create "sa:$svc-prod" >/dev/null
  "$bin" policies create "$svc-prod-reader" --rule "environments/production/$svc/**:read,list" >/dev/null
  "$bin" policies bind "$svc-prod-reader" --identity "sa:$svc-prod" >/dev/null
  "$bin" tokens create --identity "sa:$svc-prod" --scope secrets:read,secrets:list --ttl 1h >"$work/$svc.token" 2>/dev/null
done
"$bin" policies test environments/production/billing/stripe_secret_key read --identity sa:billing-prod
"$bin" policies test environments/production/reporting/database_url read --identity sa:billing-prod || true

say "the billing service reads its secrets through the SDK"
billing_token=$(cat "$work/billing.token")
out=$(set -a; . "$work/services/billing/.env.production"; set +a
      USE_SCAIVAULT=true SCAIVAULT_TOKEN="$billing_token" python3 "$here/billing_service.py")
echo "$out"
check '[[ "$out" == *"2 secrets from vault"* ]]'
denied=$(SCAIVAULT_TOKEN="$billing_token" "$bin" secrets read environments/production/reporting/database_url 2>&1 || true)
check '[[ "$denied" == *access_denied* ]]'

say "services that only read env vars: scaivault run"
out=$(SCAIVAULT_TOKEN=$(cat "$work/reporting.token") "$bin" run --prefix environments/production/reporting/ --mask -- \
      sh -c 'echo "reporting sees WAREHOUSE_PASSWORD=$WAREHOUSE_PASSWORD"')
echo "$out"
check '[[ "$out" == *"WAREHOUSE_PASSWORD=******"* ]]'

say "the audit log: is billing really reading from the vault?"
reads=$("$bin" audit query --identity sa:billing-prod --start "1 hour ago" --json)
echo "$reads" | python3 -c 'import json,sys; [print(e["timestamp"], e["action"], e["secret_path"], "ok" if e["success"] else "DENIED") for e in json.load(sys.stdin)["logs"]]'
check "[ \"\$(echo '$reads' | python3 -c 'import json,sys;print(sum(1 for e in json.load(sys.stdin)[\"logs\"] if e[\"success\"]))')\" = 2 ]"
"$bin" audit verify

say "rotation: the vault generates the next Stripe webhook secret; the old one lives 24h more"
"$bin" rotation create --name billing-webhooks --interval 30d --grace-period 24h --auto-generate
"$bin" rotation assign rot_billing-webhooks environments/production/billing/stripe_webhook_secret
"$bin" rotation rotate rot_billing-webhooks
"$bin" rotation status
old=$("$bin" secrets read environments/production/billing/stripe_webhook_secret --version 1 --field value)
check '[ "$old" = "whsec_demo==" ]'

if [ -n "${pgport:-}" ]; then
  say "rotation with the postgres backend: the vault changes the billing role's password itself"
  "$bin" secrets write infra/postgres/admin username=admin password=pg-admin-pass
  "$bin" secrets write environments/production/billing/database username=billing password=b1ll1ng
  "$bin" rotation create --name billing-db-weekly --interval 7d --grace-period 24h --auto-generate \
      --backend postgres --backend-config host=127.0.0.1 --backend-config "port=$pgport" \
      --backend-config role=billing --backend-config admin_secret_path=infra/postgres/admin
  "$bin" rotation assign rot_billing-db-weekly environments/production/billing/database
  "$bin" rotation rotate rot_billing-db-weekly
  new=$("$bin" secrets read environments/production/billing/database --field password)
  login() { PGPASSWORD="$2" PGCONNECT_TIMEOUT=5 "$pg_bin/psql" -h 127.0.0.1 -p "$pgport" -U "$1" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; }
  check 'login billing "$new"'
  check '! login billing b1ll1ng'
  echo "the new password logs in; the old one does not"
else
  echo "(no PostgreSQL server binaries here: the postgres rotation backend part is skipped)"
fi

say "rollback path: the vault goes away, the service keeps running on its env vars"
kill "$dev_pid"; wait "$dev_pid" 2>/dev/null || true
out=$(set -a; . "$work/services/billing/.env.production"; set +a
      USE_SCAIVAULT=true SCAIVAULT_FALLBACK=true SCAIVAULT_TOKEN="$billing_token" python3 "$here/billing_service.py")
echo "$out"
check '[[ "$out" == *"from env-fallback"* ]]'

say "migration complete"
