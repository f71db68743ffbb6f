#!/usr/bin/env bash
# Builds the seeded Tryton database once (about a minute): the local stack copies it for each run.
# Usage: build-template.sh VENV OUT_DIR   -> OUT_DIR/erpsync.sqlite, OUT_DIR/api-key (the REST key)
# and OUT_DIR/rpc-password (the payments user's, config [erp.rpc])
set -euo pipefail
venv=$(realpath "$1"); out=$(realpath -m "$2")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/trytond.conf" <<CONF
[database]
uri = sqlite://
path = $work
CONF
touch "$work/erpsync.sqlite"
printf 'admin\n' > "$work/pass"
TRYTONPASSFILE="$work/pass" "$venv/bin/trytond-admin" -c "$work/trytond.conf" -d erpsync --all --email admin@example.com -v >/dev/null
"$venv/bin/trytond-admin" -c "$work/trytond.conf" -d erpsync -u sale stock sale_shipment_cost sale_amendment sale_price_list sale_payment account_payment_clearing account_statement sale_gift_card --activate-dependencies >/dev/null
"$venv/bin/python" "$here/seed.py" "$work/trytond.conf" erpsync > "$work/seeded"
mkdir -p "$out"
cp "$work/erpsync.sqlite" "$out/erpsync.sqlite"
sed -n 1p "$work/seeded" > "$out/api-key"
sed -n 2p "$work/seeded" > "$out/rpc-password"
chmod 600 "$out/api-key" "$out/rpc-password"
echo "seeded Tryton template in $out"
