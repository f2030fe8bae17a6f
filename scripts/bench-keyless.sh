#!/bin/bash
# Issue 20's measurement: keyless and the full conclave against `linux` at
# 1, 2, 4 and 8 workers, 1 KiB, no keep-alive, TLS 1.2 and 1.3, three runs.
# Each ratio is taken within one run (same machine state), then the median
# of the three runs is printed, with CPU µs per request by process class
# when the eval records it (cells.csv columns cpu_us_per_req_*).
#
# usage: scripts/bench-keyless.sh [BIN] [OUTDIR]   (BIN default target/release/conclave)
set -euo pipefail
bin=${1:-target/release/conclave}
out=${2:-results/keyless-$(date -u +%Y%m%d-%H%M%S)}
runs=${RUNS:-3}
n=${N:-10000}
presets=${PRESETS:-"linux linux-keyless conclave-vericrypt"}
mkdir -p "$out"
for tls in 1.2 1.3; do
  for r in $(seq 1 "$runs"); do
    args=()
    for p in $presets; do args+=(--preset "$p"); done
    "$bin" eval "${args[@]}" -n "$n" -c 128 --sizes 1k --workers 1,2,4,8 --tenants 1 \
      --tls "$tls" --out "$out" --run-id "tls$tls-run$r" -q
  done
done
python3 - "$out" <<'PY'
import csv, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
cells = {}
for f in sorted(out.glob("tls*-run*/cells.csv")):
    run = f.parent.name
    for row in csv.DictReader(open(f)):
        if row["tenancy"] != "single" or row["status"] != "ok":
            continue
        cells[(run, row["preset"], row["workers"])] = row
runs = sorted({k[0] for k in cells})
presets = sorted({k[1] for k in cells})
workers = sorted({k[2] for k in cells}, key=int)
cpu_cols = []
for row in cells.values():
    cpu_cols = [c for c in row if c.startswith("cpu_us_per_req_")]
    break
print(f"# {out}: median over runs of (preset req/s ÷ linux req/s in the same run) [lowest–highest run]")
for tls in ("1.2", "1.3"):
    trs = [r for r in runs if r.startswith(f"tls{tls}-")]
    print(f"\nTLS {tls} ({len(trs)} runs)")
    print("| preset | " + " | ".join(f"{w} worker(s)" for w in workers) + " |")
    print("|---|" + "---|" * len(workers))
    for p in presets:
        line = []
        for w in workers:
            ratios = []
            rps = []
            for r in trs:
                a, b = cells.get((r, p, w)), cells.get((r, "linux", w))
                if a and b:
                    ratios.append(float(a["requests_per_sec"]) / float(b["requests_per_sec"]))
                    rps.append(float(a["requests_per_sec"]))
            # The in-run spread beside the median: a cell whose range straddles
            # a goal is at the goal within this machine's noise.
            spread = f" [{min(ratios):.2f}–{max(ratios):.2f}]" if len(ratios) > 1 else ""
            line.append(f"{statistics.median(ratios):.2f}×{spread} ({statistics.median(rps):.0f}/s)" if ratios else "-")
        print(f"| {p} | " + " | ".join(line) + " |")
    if cpu_cols:
        print(f"\nCPU µs per request, TLS {tls}, median over runs ({', '.join(c.removeprefix('cpu_us_per_req_') for c in cpu_cols)})")
        for p in presets:
            for w in workers:
                vals = []
                for c in cpu_cols:
                    xs = [float(cells[(r, p, w)][c]) for r in trs if (r, p, w) in cells and cells[(r, p, w)].get(c)]
                    vals.append(f"{statistics.median(xs):.0f}" if xs else "-")
                print(f"  {p:<20} w={w}: " + " / ".join(vals))
PY
