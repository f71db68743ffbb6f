#!/usr/bin/env bash
# Renders bench/*.json as the Markdown report people read.
set -euo pipefail
dir=${1:-bench}
python3 - "$dir" <<'PY'
import json, sys, platform, os
d = sys.argv[1]
s = json.load(open(os.path.join(d, "stock.json")))
print("# erpsync benchmark report\n")
print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()}. Command: `make bench` (BENCH_SKUS={s['skus_per_channel']}).\n")
print("## Stock full resync (issue 4)\n")
print(f"{s['skus_per_channel']:,} SKUs x {s['channels']} channels against the Shopify sandbox (separate process),")
print(f"restore rate {s['restore_rate_points_per_s']:.0f} points/s, bucket {s['bucket_maximum']:.0f} points; the ERP side is a")
print("deterministic stock source and the ledger is in memory, so the figures are the channel path's.\n")
print("| figure | value |\n|---|---|")
print(f"| inventory mutations | {s['mutations']} |")
print(f"| quantities set | {s['quantities_set']:,} |")
print(f"| points per channel (sandbox cost model) | {s['points_per_channel']:,.0f} |")
print(f"| throttle-bound minimum | {s['throttle_bound_minimum_s']:.1f} s |")
print(f"| elapsed | {s['elapsed_s']:.1f} s |")
print(f"| elapsed / minimum | {s['ratio_to_minimum']:.3f} (goal <= 1.1) |")
print(f"| hub peak memory (VmHWM) | {s['peak_rss_mib']:.1f} MiB (goal < 128) |")
order = os.path.join(d, "order.json")
if os.path.exists(order):
    o = json.load(open(order))
    print("\n## Order path: instructions per order message (issue 7)\n")
    print("order-sync's decisions for one new order (parse the documented 3-line order, map it, claim,")
    print("look up, create customer and sale, quote, confirm, complete) with in-memory fakes of the ports,")
    print("counted by `valgrind --tool=callgrind` (`tools/bench/callgrind.sh`): the difference between")
    print(f"{o['messages_high']} and {o['messages_low']} messages, so start-up cost drops out.\n")
    print("| figure | value |\n|---|---|")
    print(f"| instructions per order message | {o['instructions_per_message']:,.0f} |")
PY
