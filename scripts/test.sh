#!/usr/bin/env bash
# ferry's whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# Works on a fresh Debian 12 machine with only Rust installed: it installs the Debian
# packages the tests talk to when they are missing (it must run as root for that),
# starts Redis and RabbitMQ when nothing answers on their ports, then runs formatting,
# lint and every test. The integration tests start their own private php-fpm masters.
# A test that needs a program or server it cannot reach fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

# Debian packages the tests need, each with a file that shows it is installed.
declare -A needed=(
  [/usr/bin/php8.2]=php8.2-cli
  [/usr/sbin/php-fpm8.2]=php8.2-fpm
  [/usr/bin/php-cgi8.2]=php8.2-cgi
  [/usr/bin/redis-server]=redis-server
  [/usr/bin/redis-cli]=redis-tools
  [/usr/sbin/rabbitmq-server]=rabbitmq-server
  [/etc/php/8.2/mods-available/redis.ini]=php8.2-redis
  [/usr/bin/strace]=strace
  # The cluster demo (tests/cluster_demo.rs): network namespaces and veth pairs, and
  # curl for each ferry's control endpoint inside its namespace.
  [/usr/sbin/ip]=iproute2
  [/usr/bin/curl]=curl
  # ring (rustls' crypto provider) compiles C: a fresh machine needs a compiler.
  [/usr/bin/cc]=gcc
)
missing=()
for file in "${!needed[@]}"; do
  [ -e "$file" ] || missing+=("${needed[$file]}")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts must not start services for us (policy-rc.d); we start what we need.
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "test.sh: starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile /tmp/ferry-test-redis.log
fi
if ! answers 5672; then
  echo "test.sh: starting rabbitmq-server"
  rabbitmq-server -detached
fi
for _ in $(seq 1 120); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && answers 5672 && break
  sleep 1
done
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "test.sh: Redis does not answer" >&2; exit 1; }
answers 5672 || { echo "test.sh: RabbitMQ does not answer on 5672" >&2; exit 1; }

# The metrics test checks ferry's Prometheus text with the reference Python parser.
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "test.sh: installing the Python package prometheus-client"
  # pip where Python has it (pyenv here); Debian's own package for a system Python
  # that lacks pip or refuses pip installs (PEP 668), or when python3 is missing.
  python3 -m pip install --quiet prometheus-client 2>/dev/null \
    || { apt-get update -qq && apt-get install -y -qq python3 python3-prometheus-client >/dev/null; }
fi

command -v cargo >/dev/null || { echo "test.sh: cargo not found (install Rust first)" >&2; exit 1; }

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
