#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md's "Pipeline" section with `ferry bench`:
#
#   benches/run-all.sh [OUT_DIR]          # default benches/results; about 3 minutes
#
# For each source (Redis; AMQP with prefetch 1, 8, 64; ferry's RESP endpoint), each kind
# of worker (ferry responder; php-fpm running benches/null.php) and pool sizes 4 and 16:
# one full-speed run with its limits (`--limits`: the same workers driven directly, and
# the broker alone) for throughput, share of the limit, CPU per message and RSS, and one
# run at a fixed rate (--rate 2000) for latency, which at full speed only measures the
# queue. Then the concurrency sweep (10 … 10,000 requests in flight at 2,000 msg/s), the stripped
# release binary's size. Every command is appended to OUT_DIR/commands.txt, every
# result kept as JSON, and OUT_DIR/table.md is rendered from them (python3).
# Needs Redis (127.0.0.1:6379), RabbitMQ (127.0.0.1:5672, guest/guest) and php-fpm8.2
# (scripts/test.sh installs and starts them).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
out=${1:-benches/results}
count=${COUNT:-20000}
raw=$out/raw   # JSON and stderr of every run (not committed)
mkdir -p "$raw" "$out/plots"
rm -f "$raw"/*.json "$raw"/*.err "$out/commands.txt"
cargo build --release --locked --quiet || exit 1
ferry=./target/release/ferry

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cores: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

# run NAME ARGS...: one `ferry bench ARGS --json`, its JSON in OUT_DIR/NAME.json.
run() {
  local name=$1; shift
  echo "$name: ferry bench $* --json" >> "$out/commands.txt"
  echo "run-all: $name" >&2
  "$ferry" bench "$@" --json > "$raw/$name.json" 2> "$raw/$name.err"
  local code=$?
  if [ ! -s "$raw/$name.json" ]; then
    python3 -c 'import json,sys; print(json.dumps({"error": sys.argv[1]}))' \
      "$(grep -m1 'ferry bench:' "$raw/$name.err")" > "$raw/$name.json"
  fi
  return $code
}

for source in redis amqp-1 amqp-8 amqp-64 endpoint; do
  case $source in
    amqp-*) source_args=(--source amqp --prefetch "${source#amqp-}") ;;
    *) source_args=(--source "$source") ;;
  esac
  for workers in responder php; do
    worker_args=()
    [ "$workers" = php ] && worker_args=(--php-script benches/null.php)
    for pool in 4 16; do
      row="$source-$workers-$pool"
      full=(); rated=()
      if [ "$pool" = 16 ] && [ "$workers" = responder ]; then
        full=(--plot "$out/plots/$source-full-speed.svg")
        rated=(--plot "$out/plots/$source-2000-per-s.svg")
      fi
      run "$row" "${source_args[@]}" "${worker_args[@]}" --pool "$pool" --count "$count" \
        --limits "${full[@]}"
      run "$row-latency" "${source_args[@]}" "${worker_args[@]}" --pool "$pool" \
        --count 4000 --rate 2000 "${rated[@]}"
    done
  done
done

run sweep --concurrency-sweep 10,100,1000,10000

stripped=$(mktemp)
cp "$ferry" "$stripped" && strip "$stripped"
echo "binary: $(stat -c %s "$ferry") bytes release, $(stat -c %s "$stripped") bytes stripped" \
  >> "$out/machine.txt"
rm -f "$stripped"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = os.path.join(out, "raw", name + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"error": "no result"}
def n(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"
def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f}"
lines = [
    "| row | source | workers | pool | ferry msg/s | direct limit | broker limit | share of limit "
    "| ferry CPU µs/msg | latency µs at 2000 msg/s: p50 / p90 / p99 / p99.9 / max "
    "| RSS idle / peak MiB | lost |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for source in ["redis", "amqp-1", "amqp-8", "amqp-64", "endpoint"]:
    for workers in ["responder", "php"]:
        for pool in [4, 16]:
            row = f"{source}-{workers}-{pool}"
            doc, latency = load(row), load(row + "-latency")
            label = source.replace("amqp-", "AMQP prefetch ").replace("redis", "Redis")
            label = label.replace("endpoint", "RESP endpoint")
            wname = "ferry responder" if workers == "responder" else "php-fpm null.php"
            if "error" in doc:
                lines.append(f"| {row} | {label} | {wname} | {pool} | failed: {doc['error'][:100]} |||||||")
                continue
            run, direct, broker = doc["run"], doc.get("direct"), doc.get("broker")
            ferry = run.get("ferry") or {}
            lat = latency.get("latency_us") if "error" not in latency else None
            lat_text = "-" if not lat else " / ".join(n(lat[k]) for k in ["p50", "p90", "p99", "p999", "max"])
            lost = run["accounting"]["lost"] + (latency.get("accounting", {}).get("lost", 0) if "error" not in latency else 0)
            lines.append(
                f"| {row} | {label} | {wname} | {pool} | {n(run['throughput'])} "
                f"| {n(direct['throughput']) if direct else '-'} | {n(broker['throughput']) if broker else 'n/a'} "
                f"| {n((doc.get('share_of_limit') or 0) * 100)} % | {n(ferry.get('cpu_us_per_message'), 1)} "
                f"| {lat_text} | {mib(ferry.get('idle_rss_kib'))} / {mib(ferry.get('peak_rss_kib'))} | {lost} |"
            )
sweep = load("sweep")
lines += ["", "| requests in flight (rate × delay) | pool | responder delay, ms | messages | msg/s | peak in flight | ferry CPU µs/msg | RSS idle / peak MiB | KiB RSS per in-flight request | lost | pool failures |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
for run in sweep.get("sweep", []):
    ferry = run.get("ferry") or {}
    lines.append(
        f"| {n(run.get('target_in_flight'))} | {run['pool']:,} | {run['delay_ms']:,} | {run['accounting']['sent']:,} "
        f"| {n(run['throughput'])} | {n(run.get('peak_in_flight'))} "
        f"| {n(ferry.get('cpu_us_per_message'), 1)} | {mib(ferry.get('idle_rss_kib'))} / {mib(ferry.get('peak_rss_kib'))} "
        f"| {n(ferry.get('rss_kib_per_in_flight'), 1)} | {run['accounting']['lost']} | {run.get('ferry_pool_failures') or 0} |"
    )
ready = [load(f"redis-responder-{p}")["run"].get("ferry_start_to_ready_ms") for p in (4, 16)
         if "run" in load(f"redis-responder-{p}")]
idle = [load(f"redis-responder-{p}")["run"]["ferry"]["idle_rss_kib"] for p in (4, 16)
        if "run" in load(f"redis-responder-{p}")]
lines += ["", f"start to ready (Redis source, ms): {', '.join(n(r, 1) for r in ready if r is not None)}",
          f"idle RSS (KiB): {', '.join(str(i) for i in idle)}"]
with open(os.path.join(out, "table.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
cat "$out/machine.txt"
