#!/usr/bin/env bash
# Renders bench/*.json as the Markdown report people read.
set -euo pipefail
dir=${1:-bench}
python3 - "$dir" <<'PY'
import json, sys, platform, os
d = sys.argv[1]
plans = [p for p in ("standard", "advanced", "plus") if os.path.exists(os.path.join(d, p, "stock.json"))]
runs = [json.load(open(os.path.join(d, p, "stock.json"))) for p in plans]
s = runs[0]
print("# erpsync benchmark report\n")
print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()}. Command: `make bench` (BENCH_SKUS={s['skus_per_channel']}).\n")
print("## Stock full resync (issues 4 and 13)\n")
print(f"{s['skus_per_channel']:,} SKUs x {s['channels']} channels against the Shopify sandbox (separate process) under Shopify's")
print("documented cost model: the catalogue read as one bulk operation per channel (its `bulkOperationRunQuery`, 10")
print("points, and a status look-up), then `inventorySetQuantities` of 250 items at 10 points each. The ERP side")
print("is a deterministic stock source and the ledger is in memory, so the figures are the channel path's.")
print("**Minimum**: the points beyond a full bucket at the restore rate (each channel has its own bucket); the")
print("sandbox finishes a bulk operation at once, where Shopify takes its own time, which no minimum here counts.\n")
print("| figure | " + " | ".join(r.get("plan", "?") for r in runs) + " |")
print("|---|" + "---|" * len(runs))
row = lambda name, f: print(f"| {name} | " + " | ".join(f(r) for r in runs) + " |")
row("restore rate / bucket", lambda r: f"{r['restore_rate_points_per_s']:.0f} points/s / {r['bucket_maximum']:.0f}")
row("inventory mutations", lambda r: f"{r['mutations']}")
row("quantities set", lambda r: f"{r['quantities_set']:,}")
row("points per channel (bulk read + 10 per mutation)", lambda r: f"{r['points_per_channel']:,.0f}")
row("throttle-bound minimum (points beyond the bucket / restore rate)", lambda r: f"{r['throttle_bound_minimum_s']:.2f} s")
row("all points at the restore rate (bucket empty at the start)", lambda r: f"{r.get('points_at_restore_rate_s', 0):.2f} s")
row("elapsed", lambda r: f"{r['elapsed_s']:.2f} s")
row("elapsed / minimum", lambda r: f"{r['ratio_to_minimum']:.1f}" if r['ratio_to_minimum'] is not None else "n/a (the bucket holds the run)")
row("hub peak memory (VmHWM, goal < 128 MiB)", lambda r: f"{r['peak_rss_mib']:.1f} MiB")
print("\nBefore issue 13 the sandbox added nested costs and charged a mutation 10 + 1 per item: 127,500 points per")
print("channel, 125.5 s against a 125.5 s minimum (1.002 x) at 1,000 points/s. Under the documented model a real store")
print("refused those queries outright (stock-sync's read was 15,302 points, over the 1,000 limit). Now the whole run is")
print("2,011 points per channel and takes seconds of the hub's own work: the throttle no longer bounds it, so the")
print("ratio to the throttle-bound minimum (goal <= 1.1) no longer says anything; elapsed against all points at the")
print("restore rate does.")
import glob
prices = sorted((json.load(open(f)) for p in plans for f in glob.glob(os.path.join(d, p, "price-*.json"))),
                key=lambda r: (r["variants_per_product"], -r["restore_rate_points_per_s"]))
if prices:
    p0 = prices[0]
    print("\n## Price full resync (issue 13)\n")
    print(f"{p0['skus_per_channel']:,} SKUs x {p0['channels']} channels, every price changed, under the same cost model: the catalogue")
    print("read as one bulk operation per channel, then one `productVariantsBulkUpdate` (10 points) per product and")
    print("250 of its variants, paced by the bucket the answers report. Shopify takes one product's variants per call,")
    print("so the catalogue's shape decides the cost: the runs below say how many variants each product has.")
    print("**Minimum**: as for stock, the points beyond a full bucket at the restore rate.\n")
    print("| figure | " + " | ".join(f"{r['plan']}, {r['variants_per_product']} per product" for r in prices) + " |")
    print("|---|" + "---|" * len(prices))
    prow = lambda name, f: print(f"| {name} | " + " | ".join(f(r) for r in prices) + " |")
    prow("restore rate / bucket", lambda r: f"{r['restore_rate_points_per_s']:.0f} points/s / {r['bucket_maximum']:.0f}")
    prow("price mutations", lambda r: f"{r['mutations']:,}")
    prow("prices set", lambda r: f"{r['prices_set']:,}")
    prow("points per channel (bulk read + 10 per mutation)", lambda r: f"{r['points_per_channel']:,.0f}")
    prow("throttle-bound minimum", lambda r: f"{r['throttle_bound_minimum_s']:.2f} s")
    prow("elapsed", lambda r: f"{r['elapsed_s']:.2f} s")
    prow("elapsed / minimum (goal <= 1.1)", lambda r: f"**{r['ratio_to_minimum']:.3f}**" if r['ratio_to_minimum'] is not None else "n/a (the bucket holds the run)")
    prow("hub peak memory (VmHWM, goal < 128 MiB)", lambda r: f"{r['peak_rss_mib']:.1f} MiB")
    print("\nThe price-sync function has 300 s and runs one at a time: a run that would pass its timeout stops 20 s")
    print("before it, says it is incomplete in sync state, and the next run (the change poll a minute later on")
    print("real-time channels, else the hourly run) writes the rest, as it compares with the prices the channel shows.")
    print("At Standard one run writes at most (bucket + (280 s - the bulk read's time) x 100 points/s) / 10, about 3,000")
    print("products per channel: a change to every price of 50,000 single-variant products takes some 17 runs there")
    print("(2 at Plus). Shopify's `bulkOperationRunMutation` would write them in one operation; erpsync does not use it yet.")
    print("Before issue 13 price-sync read `products(first: 50) { variants(first: 100) }`, 5,150 points by the documented")
    print("rules: a real store refused it, and no price was ever written; variants past the 100th were skipped.")
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
fns = os.path.join(d, "functions.json")
if os.path.exists(fns):
    f = json.load(open(fns))
    mib = lambda b: f"{b / 1048576:.1f} MiB" if b else "-"
    print("\n## Functions (issue 7)\n")
    print("Each function's release binary (x86_64, this machine) run as Lambda runs it: its own process")
    print("polling a local Runtime API (`sandbox::lambda`), on the local stack (moto, a real Tryton, the")
    print("Shopify sandbox), with the environment the template gives it. **Init** is exec to the first")
    print(f"poll for work, {f['cold_starts_per_function']} cold starts each (it includes reading the config, Secrets Manager on moto and,")
    print("for the functions that warm up, their first ERP call). **Peak memory** is the process's VmHWM after")
    print("its batch of 10, chained as in production. Sizes: the x86_64 binary measured here, and the arm64")
    print("binary and zip that deploy (`cargo lambda build --release --arm64 --output-format zip`).\n")
    print("| function | init median (p25-p75, min-max) | peak memory after the batch | the batch of 10 | binary x86_64 | arm64 zip |")
    print("|---|---|---|---|---|---|")
    for r in f["functions"]:
        i = r["init_ms"]
        print(f"| {r['function']} | {i['median']:.1f} ms ({i['p25']:.1f}-{i['p75']:.1f}, {i['min']:.1f}-{i['max']:.1f}) | "
              f"{r['peak_rss_mib']:.1f} MiB of {r['memory_mb']} MB | {r['batch']} | {mib(r['binary_bytes'])} | {mib(r.get('arm64_zip_bytes'))} |")
    o = f["order_path"]
    e, h, a = o["erp_alone_orders_per_s"], o["hub_orders_per_s"], o["aws_requests_per_order"]
    print("\n## Order path: the hub against the ERP's own throughput (issue 7)\n")
    print(f"{o['orders_per_round']} new orders per round, {e['samples']} rounds each, alternating, at concurrency {o['concurrency']} (order-sync's")
    print("MaximumConcurrency). **ERP alone**: order-sync's decisions and ERP calls for each order, straight to")
    print("Tryton, sync state in memory. **Hub**: signed webhooks into shop-webhook, the FIFO queue, five order-sync")
    print("processes fed by the event source mapping, DynamoDB and SQS on moto, timed from the first delivery to the")
    print("empty queue. moto runs on the same two cores as Tryton, so the hub's figure is a floor.\n")
    print("| figure | median | spread (min-max) |\n|---|---|---|")
    print(f"| ERP alone, orders/s | {e['median']:.2f} | {e['min']:.2f}-{e['max']:.2f} |")
    print(f"| hub, orders/s | {h['median']:.2f} | {h['min']:.2f}-{h['max']:.2f} |")
    print(f"| hub / ERP alone | **{o['hub_to_erp']:.2f}** (goal >= 0.9) | |")
    print(f"| AWS requests per order, webhook to ERP | **{a['median']:.2f}** (goal <= 4) | {a['min']:.2f}-{a['max']:.2f} |")
    print("\nAWS requests per order by operation (all hub rounds; the event source mapping's receives and")
    print("deletes included, as SQS bills them):\n")
    print("| operation | per order |\n|---|---|")
    for op, n in sorted(o["aws_requests_per_order_by_operation"].items(), key=lambda kv: -kv[1]):
        print(f"| {op} | {n:.2f} |")
PY
