#!/usr/bin/env bash
# ferry's quick start, with nothing but ferry: ferry is the Redis endpoint (RESP on
# 127.0.0.1:6380) and starts its own workers (a spawned pool): php-cgi running
# examples/worker.php when php-cgi is installed, else ferry's built-in responder.
# Every message published to the channel "jobs" becomes one FastCGI request; the worker
# appends one JSON line per message to /tmp/ferry-quickstart/worker.log (fresh each run).
# Runs in the foreground; Ctrl-C drains, stops the workers and exits.
#
#   QUICKSTART_WORKER=php-cgi|responder scripts/quickstart.sh   # choose the worker
#
# Needs only Rust (cargo). The configs are examples/quickstart/{php-cgi,responder}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/ferry-quickstart
mkdir -p "$dir"
: > "$dir/worker.log"   # fresh, and there from the start (a cat right after a publish finds it)
cp examples/worker.php "$dir/worker.php"

worker=${QUICKSTART_WORKER:-}
if [ -z "$worker" ]; then
  if command -v php-cgi >/dev/null 2>&1; then worker=php-cgi; else worker=responder; fi
fi
case $worker in
  php-cgi | responder) ;;
  *) echo "quickstart: QUICKSTART_WORKER must be php-cgi or responder, not '$worker'" >&2; exit 2 ;;
esac

cargo build --release --quiet
echo "quickstart: ferry listens for Redis clients on 127.0.0.1:6380 and runs $worker workers;" \
     "they write to $dir/worker.log. Ctrl-C stops." >&2
exec ./target/release/ferry run --config "examples/quickstart/$worker.json"
