#!/usr/bin/env bash
# ferry's whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# Works on a fresh Debian 12 machine with only Rust installed: it installs the Debian
# packages the tests talk to when they are missing (it must run as root for that), then
# runs formatting, lint and every test. A test that needs a program or server it cannot
# reach fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, keyed by a command each one provides.
declare -A needed=(
  [php]=php8.2-cli
)

missing=()
for cmd in "${!needed[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needed[$cmd]}")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "test.sh: cargo not found (install Rust first)" >&2; exit 1; }

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
