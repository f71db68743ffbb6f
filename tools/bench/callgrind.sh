#!/usr/bin/env bash
# Instructions per order message in order-sync's decisions (fakes for the ports, no I/O),
# counted by callgrind: repeatable on a busy machine, unlike time. Two runs (LOW and HIGH
# messages) and their difference, so start-up cost drops out. Writes DIR/order.json.
set -euo pipefail
dir=${1:-bench}
low=${ORDER_BENCH_LOW:-10}
high=${ORDER_BENCH_HIGH:-110}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$work/out.$1" target/release/order-bench "$1" > /dev/null 2>&1
  awk '/^totals:/ { print $2 }' "$work/out.$1"
}
a=$(count "$low")
b=$(count "$high")
python3 - "$dir/order.json" "$low" "$high" "$a" "$b" <<'PY'
import json, sys
path, low, high, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
json.dump({"messages_low": low, "messages_high": high, "instructions_low": a, "instructions_high": b,
           "instructions_per_message": (b - a) / (high - low)}, open(path, "w"), indent=1)
PY
