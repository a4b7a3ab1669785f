#!/usr/bin/env bash
# ferry's quick start: a private php-fpm running examples/worker.php, and ferry carrying
# messages from the Redis channel "jobs" (127.0.0.1:6379) to it, in the foreground.
# Publish from another terminal (see README); Ctrl-C drains and stops ferry.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
dir=/tmp/ferry-quickstart
mkdir -p "$dir"

if [ ! -e /usr/sbin/php-fpm8.2 ] || ! command -v redis-server >/dev/null; then
  echo "quickstart: installing php8.2-fpm and redis (needs root)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq php8.2-fpm php8.2-cli redis-server redis-tools >/dev/null
fi
redis-cli ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""

cp examples/worker.php "$dir/worker.php"
cat > "$dir/php-fpm.conf" <<CONF
[global]
pid = $dir/php-fpm.pid
error_log = $dir/php-fpm.log
daemonize = no
[quickstart]
listen = $dir/php-fpm.sock
pm = static
pm.max_children = 4
env[FERRY_EXAMPLE_LOG] = $dir/worker.log
CONF
php-fpm8.2 -F -R -y "$dir/php-fpm.conf" &
fpm=$!
trap 'kill $fpm 2>/dev/null' EXIT
for _ in $(seq 1 50); do [ -S "$dir/php-fpm.sock" ] && break; sleep 0.1; done

cargo build --release --quiet
echo "quickstart: ferry is running; the worker writes to $dir/worker.log"
./target/release/ferry run --redis redis://127.0.0.1:6379 --channel jobs \
  --fastcgi "unix:$dir/php-fpm.sock" --script "$dir/worker.php"
