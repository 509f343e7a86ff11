#!/usr/bin/env bash
# The .env migration, end to end, against a fresh `scaivault dev`:
# three services' .env.production files → one fleet import (with a mapping that groups the
# Salesforce credentials and leaves public settings in the environment) → a service account and
# a narrow policy per service → the billing service reading through the Python SDK with an env
# fallback → the audit log showing its reads.
#
# Needs: the scaivault binary (SCAIVAULT_BIN or on PATH), python3 with scaivault-sdk installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SCAIVAULT_BIN:-scaivault}
work=$(mktemp -d)
trap 'kill "${dev_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
say() { printf '\n== %s\n' "$*"; }
check() { if ! eval "$1"; then echo "CHECK FAILED: $1" >&2; exit 1; fi; }

say "start a dev vault"
"$bin" dev --listen 127.0.0.1:0 --json >"$work/dev.json" 2>/dev/null &
dev_pid=$!
for _ in $(seq 100); do [ -s "$work/dev.json" ] && break; sleep 0.05; done
SCAIVAULT_URL=$(python3 -c "import json;print(json.load(open('$work/dev.json'))['url'])")
SCAIVAULT_TOKEN=$(python3 -c "import json;print(json.load(open('$work/dev.json'))['root_token'])")
export SCAIVAULT_URL SCAIVAULT_TOKEN HOME="$work"

say "the .env files the services use today"
mkdir -p "$work/services/billing" "$work/services/reporting" "$work/services/notifications"
cat >"$work/services/billing/.env.production" <<'ENV'
# Billing — production
STRIPE_SECRET_KEY=sk_live_51HbillingDEMO
STRIPE_WEBHOOK_SECRET="whsec_demo=="
DATABASE_URL=postgres://billing:b1ll1ng@db.internal:5432/billing
PUBLIC_URL=https://billing.example.com
ENV
cat >"$work/services/reporting/.env.production" <<'ENV'
DATABASE_URL=postgres://reporting:r3port@db.internal:5432/reporting
WAREHOUSE_PASSWORD='w@rehouse pass'
LOG_LEVEL=info
ENV
cat >"$work/services/notifications/.env.production" <<'ENV'
export SENDGRID_API_KEY=SG.demo-key
SALESFORCE_CLIENT_ID=3MVG9demo
SALESFORCE_CLIENT_SECRET=sf-secret-demo
PUBLIC_URL=https://notify.example.com
ENV
cat >"$work/mapping.json" <<'JSON'
{
  "secrets": {
    "salesforce": { "SALESFORCE_CLIENT_ID": "client_id", "SALESFORCE_CLIENT_SECRET": "client_secret" }
  },
  "skip": ["PUBLIC_URL", "LOG_LEVEL"]
}
JSON

say "import the fleet: plan first, then for real, then again (nothing changes)"
"$bin" import dotenv --fleet "$work/services" --mapping "$work/mapping.json" --tag production --dry-run
"$bin" import dotenv --fleet "$work/services" --mapping "$work/mapping.json" --tag production
again=$("$bin" import dotenv --fleet "$work/services" --mapping "$work/mapping.json" --tag production --json)
check "[ \"\$(python3 -c 'import json,sys;d=json.loads(sys.argv[1]);print(d[\"create\"]+d[\"new_version\"])' '$again')\" = 0 ]"
"$bin" secrets list --prefix environments/production/

say "a service account and a narrow policy per service"
for svc in billing reporting notifications; do
  "$bin" identity create "sa:$svc-prod" >/dev/null
  "$bin" policies create "$svc-prod-reader" --rule "environments/production/$svc/**:read,list" >/dev/null
  "$bin" policies bind "$svc-prod-reader" --identity-id "sa:$svc-prod" >/dev/null
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
reads=$("$bin" audit query --identity-id sa:billing-prod --start "1 hour ago" --json)
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
echo "(rotation backends that apply the value to PostgreSQL or a webhook are not built yet)"

say "rollback path: the vault goes away, the service keeps running on its env vars"
kill "$dev_pid"; wait "$dev_pid" 2>/dev/null || true
out=$(set -a; . "$work/services/billing/.env.production"; set +a
      USE_SCAIVAULT=true SCAIVAULT_FALLBACK=true SCAIVAULT_TOKEN="$billing_token" python3 "$here/billing_service.py")
echo "$out"
check '[[ "$out" == *"from env-fallback"* ]]'

say "migration complete"
