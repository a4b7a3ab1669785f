#!/usr/bin/env bash
# Captures real php-fpm answers into tests/data/fastcgi/ (request and response bytes).
#
# Starts a PRIVATE php-fpm master (its own config, unix socket, pid and error log in a
# temporary directory; the stock php-fpm service is not touched), sends raw FastCGI
# requests with fastcgi_client.py, and kills the master at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=scripts/capture
out=tests/data/fastcgi
mkdir -p "$out"

tmp=$(mktemp -d /tmp/ferry-fcgi-capture.XXXXXX)
# The workers run as this user and must read the script: copy it somewhere world-readable.
chmod 755 "$tmp"
cp "$here/fastcgi_worker.php" "$tmp/worker.php"
chmod 644 "$tmp/worker.php"

cat >"$tmp/php-fpm.conf" <<CONF
[global]
pid = $tmp/php-fpm.pid
error_log = $tmp/php-fpm.log
daemonize = no

[ferry-capture]
user = $(id -un)
group = $(id -gn)
listen = $tmp/php-fpm.sock
pm = static
pm.max_children = 2
catch_workers_output = yes
php_admin_value[display_errors] = Off
php_admin_value[log_errors] = On
CONF

php-fpm8.2 -F -R -y "$tmp/php-fpm.conf" &
master=$!
cleanup() {
  kill "$master" 2>/dev/null || true
  wait "$master" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

for _ in $(seq 50); do [ -S "$tmp/php-fpm.sock" ] && break; sleep 0.1; done

client() { python3 "$here/fastcgi_client.py" "$tmp/php-fpm.sock" "$@"; }
client "$out/normal" request "$tmp/worker.php" "mode=normal" "name=ferry&n=42&tags%5B0%5D=a+b"
client "$out/stderr" request "$tmp/worker.php" "mode=stderr" "x=1"
client "$out/status_503" request "$tmp/worker.php" "mode=status" ""
client "$out/missing_script" request "$tmp/does-not-exist.php" "mode=normal" "x=1"
client "$out/get_values" get_values

sleep 0.3
echo "--- php-fpm error log (php://stderr lands here, not in FastCGI STDERR):"
cat "$tmp/php-fpm.log"
