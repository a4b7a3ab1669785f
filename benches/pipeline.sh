#!/usr/bin/env bash
# End-to-end throughput of ferry: broker → ferry → php-fpm, with ferry's CPU time per
# message and peak RSS. A benchmark, not a test (numbers go to BENCHMARKS.md).
#
#   [KEEP_CONN=true] benches/pipeline.sh redis|amqp|direct POOL_SIZE COUNT [null|logging]
#
# `direct` drives the same php-fpm with POOL_SIZE concurrent clients and no ferry: the limit.
#
# Starts a private php-fpm (pm static, POOL_SIZE children) with a worker that appends one
# byte per request to a counter file ("null" does only that; "logging" also writes a JSON
# line like a real job), runs the release build of ferry, publishes COUNT messages with
# `ferry publish`, waits until the worker counted them all, and prints one result line.
# Needs Redis (127.0.0.1:6379), RabbitMQ (127.0.0.1:5672, guest/guest) and php-fpm8.2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
kind=${1:?redis|amqp|direct}; size=${2:?pool size}; count=${3:?message count}; worker=${4:-null}
dir=$(mktemp -d /tmp/ferry-bench.XXXXXX)
ferry_pid=""; fpm_pid=""
trap 'kill $ferry_pid $fpm_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
cargo build --release --quiet
ferry=./target/release/ferry

case $worker in
  null) echo '<?php file_put_contents(getenv("COUNTER"), "x", FILE_APPEND);' > "$dir/w.php" ;;
  logging) echo '<?php file_put_contents(getenv("LOG"), json_encode(["post" => $_POST, "server" => array_filter($_SERVER, fn($k) => str_starts_with($k, "FERRY_"), ARRAY_FILTER_USE_KEY)]) . "\n", FILE_APPEND | LOCK_EX); file_put_contents(getenv("COUNTER"), "x", FILE_APPEND);' > "$dir/w.php" ;;
esac
cat > "$dir/fpm.conf" <<CONF
[global]
pid = $dir/fpm.pid
error_log = $dir/fpm.log
daemonize = no
[bench]
listen = $dir/fpm.sock
listen.backlog = 4096
pm = static
pm.max_children = $size
env[COUNTER] = $dir/counter
env[LOG] = $dir/worker.log
CONF
php-fpm8.2 -F -R -y "$dir/fpm.conf" & fpm_pid=$!
for _ in $(seq 1 100); do [ -S "$dir/fpm.sock" ] && break; sleep 0.05; done

if [ "$kind" = direct ]; then
  # The limit: php-fpm driven with no broker and no ferry (POOL_SIZE concurrent clients).
  cargo build --release --quiet --example fastcgi_direct
  keep_flag=(); [ "${KEEP_CONN:-false}" = true ] && keep_flag=(--keep)
  ./target/release/examples/fastcgi_direct "$dir/fpm.sock" "$dir/w.php" "$count" "$size" "${keep_flag[@]}"
  exit 0
fi

name=bench-$$-$RANDOM
keep=${KEEP_CONN:-false}
case $kind in
  redis) source_json="{\"name\": \"bench\", \"kind\": \"redis\", \"url\": \"redis://127.0.0.1:6379\",
           \"channels\": [\"$name\"], \"backlog\": $((count + 1)), \"backlog_bytes\": 1073741824,
           \"job\": {\"pool\": \"php\", \"script\": \"$dir/w.php\"}}"
         publish=(--redis redis://127.0.0.1:6379 --channel "$name") ;;
  amqp)  source_json="{\"name\": \"bench\", \"kind\": \"amqp\",
           \"url\": \"amqp://guest:guest@127.0.0.1:5672/%2f\", \"queue\": \"$name\",
           \"prefetch\": $((size * 2)), \"job\": {\"pool\": \"php\", \"script\": \"$dir/w.php\"}}"
         publish=(--amqp amqp://guest:guest@127.0.0.1:5672/%2f --queue "$name") ;;
esac
cat > "$dir/ferry.json" <<JSON
{"control": {"listen": null},
 "pools": {"php": {"address": "unix:$dir/fpm.sock", "max_in_flight": $size, "keep_conn": $keep}},
 "sources": [$source_json]}
JSON
message='{"number": {n}, "name": "benchmark message"}'
if [ "$kind" = amqp ]; then
  # AMQP: the queue is filled first, then drained by ferry (publish is not measured).
  $ferry publish "${publish[@]}" --count "$count" "$message" 2>/dev/null
fi
$ferry run --config "$dir/ferry.json" --log-level warn 2>"$dir/ferry.log" & ferry_pid=$!
sleep 0.5
cpu() { awk '{print $14 + $15}' "/proc/$ferry_pid/stat"; }
start_cpu=$(cpu); start=$(date +%s.%N)
[ "$kind" = redis ] && $ferry publish "${publish[@]}" --count "$count" "$message" 2>/dev/null
while [ "$(stat -c %s "$dir/counter" 2>/dev/null || echo 0)" -lt "$count" ]; do sleep 0.01; done
end=$(date +%s.%N); end_cpu=$(cpu)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$ferry_pid/status")
tck=$(getconf CLK_TCK)
awk -v k="$kind" -v s="$size" -v w="$worker" -v kc="$keep" -v n="$count" -v t0="$start" -v t1="$end" \
    -v c0="$start_cpu" -v c1="$end_cpu" -v tck="$tck" -v rss="$rss" 'BEGIN {
  t = t1 - t0; cpu_us = (c1 - c0) / tck * 1e6
  printf "%s pool=%d keep_conn=%s worker=%s messages=%d seconds=%.2f msg/s=%.0f ferry_cpu_us/msg=%.1f peak_rss_kb=%d\n",
         k, s, kc, w, n, t, n / t, cpu_us / n, rss }'
