#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20), seeded from the real payloads in
# tests/fixtures and events/ and from the example config. Any crash or panic fails the run
# and leaves its input in fuzz/artifacts/. usage: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# cargo fuzz passes nightly flags (sanitizers); stable takes them with RUSTC_BOOTSTRAP.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds/json" "$seeds/config"
cp tests/fixtures/*.json tests/fixtures/*.raw "$seeds/json/"
find events -name '*.json' -exec cp {} "$seeds/json/" \;
cp config/erpsync.example.toml "$seeds/config/"
for target in shopify_webhook woocommerce_webhook courier_webhook config_loader; do
  case $target in
    config_loader) seed="$seeds/config" ;;
    *) seed="$seeds/json" ;;
  esac
  mkdir -p "fuzz/corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  status=0
  "${fuzz[@]}" run --jobs 1 "$target" "fuzz/corpus/$target" "$seed" -- \
    -max_total_time="$seconds" -print_final_stats=1 > "$seeds/$target.log" 2>&1 || status=$?
  grep -E 'stat::number_of_executed_units|stat::new_units_added' "$seeds/$target.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$seeds/$target.log"
    echo "fuzz: $target failed (exit $status); a failing input is kept in fuzz/artifacts/$target/"
    exit 1
  fi
done
