#!/usr/bin/env bash
# System calls and wake-ups per message of one ferry process, counted with `perf stat`
# (linux-perf) while `ferry publish` sends COUNT messages through Redis to a pool of
# `ferry responder` workers. Usage: benches/syscalls.sh [FERRY_BINARY] [COUNT] [redis|amqp] [keep_conn]
set -euo pipefail
ferry=${1:-target/release/ferry}
count=${2:-20000}
source=${3:-redis}
keep=${4:-false}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
channel="ferry-syscalls-$$"
"$ferry" responder --listen "unix:$dir/w.sock" --log "$dir/w.log" 2>/dev/null &
if [ "$source" = redis ]; then
  src="{\"name\":\"s\",\"kind\":\"redis\",\"url\":\"redis://127.0.0.1:6379\",\"channels\":[\"$channel\"],\"backlog\":100000,\"job\":{\"pool\":\"p\",\"script\":\"/w.php\"}}"
else
  src="{\"name\":\"s\",\"kind\":\"amqp\",\"url\":\"amqp://guest:guest@127.0.0.1:5672/%2f\",\"queue\":\"$channel\",\"declare\":{\"durable\":false,\"arguments\":{\"x-expires\":600000}},\"prefetch\":16,\"job\":{\"pool\":\"p\",\"script\":\"/w.php\"}}"
fi
cat > "$dir/c.json" <<JSON
{"control":{"listen":null},"pools":{"p":{"address":"unix:$dir/w.sock","max_in_flight":8,"keep_conn":$keep}},"sources":[$src]}
JSON
"$ferry" run --config "$dir/c.json" --log-level warn 2>"$dir/ferry.log" &
pid=$!
sleep 1.5
events=syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_connect,syscalls:sys_enter_socket,syscalls:sys_enter_close,context-switches
perf stat -x, -e "$events" -p "$pid" -o "$dir/perf.txt" &
perfpid=$!
sleep 0.5
if [ "$source" = redis ]; then
  "$ferry" publish --redis redis://127.0.0.1:6379 --channel "$channel" --count "$count" '{"n": {n}}' >/dev/null
else
  "$ferry" publish --amqp amqp://guest:guest@127.0.0.1:5672/%2f --queue "$channel" --count "$count" '{"n": {n}}' >/dev/null
fi
for _ in $(seq 1 600); do
  [ "$(wc -l < "$dir/w.log")" -ge "$count" ] && break
  sleep 0.1
done
sleep 0.3
kill -INT $perfpid; wait $perfpid 2>/dev/null || true
echo "messages: $(wc -l < "$dir/w.log") (source $source, keep_conn $keep)"
awk -F, -v n="$count" '$3 ~ /syscalls|context/ { name=$3; sub("syscalls:sys_enter_","",name); printf "%-18s %10d  %6.2f per message\n", name, $1, $1/n }' "$dir/perf.txt"
