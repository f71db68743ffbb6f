#!/usr/bin/env bash
# Builds the seeded Tryton database once (about a minute): the local stack copies it for each run.
# Usage: build-template.sh VENV OUT_DIR   -> OUT_DIR/erpsync.sqlite and OUT_DIR/api-key
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
"$venv/bin/trytond-admin" -c "$work/trytond.conf" -d erpsync -u sale stock sale_shipment_cost sale_amendment sale_price_list --activate-dependencies >/dev/null
"$venv/bin/python" "$here/seed.py" "$work/trytond.conf" erpsync > "$work/api-key"
mkdir -p "$out"
cp "$work/erpsync.sqlite" "$out/erpsync.sqlite"
cp "$work/api-key" "$out/api-key"
echo "seeded Tryton template in $out"
