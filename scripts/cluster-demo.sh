#!/usr/bin/env bash
# The multi-host demo (docs/CLUSTER.md): a three-node RabbitMQ cluster with a quorum
# queue, and three ferry "hosts" — each in its own network namespace with its own php-fpm
# master — consuming it together while faults happen:
#   1. kill -9 of the ferry on host 1 (then started again),
#   2. host 2 cut from the network for --cut-seconds (its veth link down, then up),
#   3. the RabbitMQ node that leads the quorum queue stopped (then started again).
# Then it checks that every message was processed, that duplicates stay within what the
# faulted ferries held unacked, and prints per-host counts, the aggregate rate and the
# time each fault took to recover from. Exit 0 when every check passed, 1 when one
# failed, 2 on usage errors.
#
# Needs root (ip netns), iproute2, rabbitmq-server, php8.2-fpm, curl, python3 and ferry
# built with `cargo build --release`. Everything it makes is named after its PID and
# removed on exit (even on failure or Ctrl-C) unless --keep is given. The system's
# RabbitMQ (5672) and Redis (6379) are not touched.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

usage() {
  cat <<'EOF'
Usage: scripts/cluster-demo.sh [--messages N] [--work-ms MS] [--cut-seconds S]
                               [--prefetch N] [--children N] [--heartbeat-s S]
                               [--timeout S] [--keep] [--ferry PATH]

  --messages N      messages to publish (default 20000)
  --work-ms MS      time each PHP job sleeps (default 30), so the faults hit a busy system
  --cut-seconds S   how long host 2 is cut from the network (default 10)
  --prefetch N      each ferry's prefetch and max_in_flight (default 4)
  --children N      php-fpm children per host (default: --prefetch)
  --heartbeat-s S   AMQP heartbeat ferry asks for (default 3: a 10 s cut outlives it)
  --timeout S       give up waiting for the queue to drain after S seconds (default 600)
  --keep            leave everything running for inspection (prints how to clean up)
  --ferry PATH      the ferry binary (default target/release/ferry)
EOF
}

MESSAGES=20000
WORK_MS=30
CUT_S=10
PREFETCH=4
CHILDREN=
HEARTBEAT_S=3
TIMEOUT_S=600
KEEP=0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FERRY="$ROOT/target/release/ferry"
while (($#)); do
  case "$1" in
    --messages) MESSAGES="${2:?}"; shift 2 ;;
    --work-ms) WORK_MS="${2:?}"; shift 2 ;;
    --cut-seconds) CUT_S="${2:?}"; shift 2 ;;
    --prefetch) PREFETCH="${2:?}"; shift 2 ;;
    --children) CHILDREN="${2:?}"; shift 2 ;;
    --heartbeat-s) HEARTBEAT_S="${2:?}"; shift 2 ;;
    --timeout) TIMEOUT_S="${2:?}"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --ferry) FERRY="${2:?}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "cluster-demo: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
CHILDREN="${CHILDREN:-$PREFETCH}"
for v in MESSAGES WORK_MS CUT_S PREFETCH CHILDREN HEARTBEAT_S TIMEOUT_S; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "cluster-demo: --${v,,} must be a whole number" >&2; exit 2; }
done
((MESSAGES >= 100)) || { echo "cluster-demo: --messages must be at least 100" >&2; exit 2; }

RABBIT_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
RABBIT_CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
PHP_FPM=/usr/sbin/php-fpm8.2

# ---- prerequisites: a missing one is an error, never a silent skip --------------------
fail_pre() { echo "cluster-demo: $*" >&2; exit 1; }
((EUID == 0)) || fail_pre "needs root (network namespaces, veth pairs)"
command -v ip >/dev/null || fail_pre "ip not found: install iproute2"
[ -x "$RABBIT_SERVER" ] || fail_pre "$RABBIT_SERVER not found: install rabbitmq-server"
[ -x "$PHP_FPM" ] || fail_pre "$PHP_FPM not found: install php8.2-fpm"
command -v curl >/dev/null || fail_pre "curl not found: install curl"
command -v python3 >/dev/null || fail_pre "python3 not found: install python3"
[ -x "$FERRY" ] || fail_pre "$FERRY not found: run cargo build --release"

# ---- names: everything carries the PID, so runs never clash ----------------------------
RUN="ferry-demo-$$"              # namespaces, node names, temp dir
SHORT="fd$$"                     # veth names (15 characters at most)
HOST="$(hostname -s)"
DIR="$(mktemp -d "/tmp/$RUN.XXXX")"
chmod 755 "$DIR"                 # php-fpm's children read the worker from here
QUEUE="$RUN-jobs"
NODES=(a b c)
HOSTS=(1 2 3)
# A /30 per host in 10.X.Y.0/24, X and Y from the PID; refuse a subnet already in use.
NET="10.$(((($$ >> 8) % 200) + 20)).$(($$ % 256))"
if ip -4 addr show | grep -q "inet $NET\."; then
  fail_pre "subnet $NET.0/24 is in use on this machine; run again (another PID picks another)"
fi

log() { printf '%s cluster-demo: %s\n' "$(date +%T.%3N)" "$*"; }
now() { date +%s.%N; }
# sleep that a signal interrupts at once (bash runs traps only between commands, or
# during `wait`).
pause() {
  sleep "$1" &
  wait "$!"
}

COOKIE="FERRYDEMO$$$(date +%s)"
NODE_ENV=(
  "HOME=$DIR/rabbit-@NODE@"
  "RABBITMQ_NODENAME=$RUN-@NODE@@$HOST"
  "RABBITMQ_CONFIG_FILE=$DIR/rabbit-@NODE@/rabbitmq.conf"
  "RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/rabbit-@NODE@/enabled_plugins"
  "RABBITMQ_MNESIA_BASE=$DIR/rabbit-@NODE@/mnesia"
  "RABBITMQ_LOG_BASE=$DIR/rabbit-@NODE@/log"
  "RABBITMQ_PID_FILE=$DIR/rabbit-@NODE@/node.pid"
  # Three nodes share two cores with everything else: no scheduler busy-waiting.
  "RABBITMQ_SCHEDULER_BUSY_WAIT_THRESHOLD=none"
)
# ---- cleanup: by recorded PIDs and process groups, then namespaces and links ----------
declare -A PGIDS=()              # name -> process group of something we started
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((KEEP)); then
    log "--keep: left running in $DIR (namespaces $RUN-h1..3, RabbitMQ nodes $RUN-a..c@$HOST)"
    log "clean up with: kill -- -PGID for each of: ${PGIDS[*]:-none}; ip netns del $RUN-h{1,2,3}; rm -rf $DIR"
    exit "$status"
  fi
  log "cleaning up"
  local name
  for n in "${NODES[@]}"; do
    [ -d "$DIR/rabbit-$n" ] && timeout 20 env "${NODE_ENV[@]/@NODE@/$n}" \
      "$RABBIT_CTL" -n "$RUN-$n@$HOST" stop >/dev/null 2>&1 || true
  done
  for name in "${!PGIDS[@]}"; do kill -TERM -- "-${PGIDS[$name]}" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for name in "${!PGIDS[@]}"; do kill -0 -- "-${PGIDS[$name]}" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for name in "${!PGIDS[@]}"; do kill -KILL -- "-${PGIDS[$name]}" 2>/dev/null || true; done
  for n in "${NODES[@]}"; do
    # The node's Erlang VM by the pid it wrote, if that pid is still this node's.
    local pidfile="$DIR/rabbit-$n/node.pid" pid
    pid="$(cat "$pidfile" 2>/dev/null)" || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$RUN-$n@" &&
      kill -KILL "$pid" 2>/dev/null || true
  done
  for h in "${HOSTS[@]}"; do
    if ip netns list | grep -qw "$RUN-h$h"; then
      for pid in $(ip netns pids "$RUN-h$h" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns del "$RUN-h$h" 2>/dev/null || true
    fi
    ip link del "${SHORT}h${h}r" 2>/dev/null || true
  done
  rm -rf "$DIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background in its own session (so its process group is ours to
# kill), records the group under $1's name.
start_group() {
  local name="$1"; shift
  setsid "$@" &
  PGIDS[$name]=$!
  disown "$!" # no "Killed" job notices; bash still reaps it
}

# ---- ports ------------------------------------------------------------------------------
used_ports() { ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u; }
PORTS=()
pick_ports() {
  local used candidate
  used="$(used_ports)"
  candidate=$((20000 + ($$ * 7) % 9000))
  while ((${#PORTS[@]} < 6)); do
    candidate=$((candidate + 1))
    grep -qx "$candidate" <<<"$used" || PORTS+=("$candidate")
  done
}
pick_ports
declare -A AMQP_PORT=([a]=${PORTS[0]} [b]=${PORTS[1]} [c]=${PORTS[2]})
declare -A DIST_PORT=([a]=${PORTS[3]} [b]=${PORTS[4]} [c]=${PORTS[5]})

# ---- the RabbitMQ cluster ---------------------------------------------------------------
ctl() { # ctl NODE ARGS...
  local n="$1"; shift
  env "${NODE_ENV[@]/@NODE@/$n}" "$RABBIT_CTL" -n "$RUN-$n@$HOST" "$@"
}
node_start() {
  local n="$1"
  start_group "rabbit-$n" env -C "$DIR/rabbit-$n" "${NODE_ENV[@]/@NODE@/$n}" \
    "RABBITMQ_NODE_PORT=${AMQP_PORT[$n]}" "RABBITMQ_DIST_PORT=${DIST_PORT[$n]}" \
    "$RABBIT_SERVER" >>"$DIR/rabbit-$n/node.out" 2>&1 </dev/null
}
node_wait() { # waits until the node runs its applications (up to 120 s)
  ctl "$1" wait --timeout 120 "$DIR/rabbit-$1/node.pid" >/dev/null 2>&1 &&
    ctl "$1" await_startup --timeout 120 >/dev/null 2>&1 ||
    { echo "RabbitMQ node $1 did not start:"; tail -20 "$DIR/rabbit-$1/node.out"; return 1; } >&2
}
for n in "${NODES[@]}"; do
  d="$DIR/rabbit-$n"
  mkdir -p "$d/mnesia" "$d/log"
  # Listens on every address (the namespaces reach it through their veth's root side);
  # guest may log in from them (loopback_users = none); no plugins, no management port.
  printf 'listeners.tcp.default = %s\nloopback_users = none\nmanagement.tcp.port = 0\n' \
    "${AMQP_PORT[$n]}" >"$d/rabbitmq.conf"
  echo '[].' >"$d/enabled_plugins"
  printf '%s' "$COOKIE" >"$d/.erlang.cookie"
  chmod 400 "$d/.erlang.cookie"
done
log "starting RabbitMQ nodes $RUN-{a,b,c}@$HOST on ports ${AMQP_PORT[a]} ${AMQP_PORT[b]} ${AMQP_PORT[c]}"
for n in "${NODES[@]}"; do node_start "$n"; done
for n in "${NODES[@]}"; do node_wait "$n"; done
for n in b c; do
  for step in stop_app reset "join_cluster $RUN-a@$HOST" start_app; do
    # shellcheck disable=SC2086 # the step is a command and its argument
    ctl "$n" $step >>"$DIR/rabbit-$n/ctl.out" 2>&1 ||
      { echo "cluster-demo: rabbitmqctl -n $RUN-$n@$HOST $step failed:"; tail -20 "$DIR/rabbit-$n/ctl.out"; exit 1; } >&2
  done
done
running="$(ctl a cluster_status --formatter json | python3 -c \
  'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')"
[ "$running" = 3 ] || { echo "cluster-demo: the cluster runs $running nodes, not 3" >&2; exit 1; }
log "cluster of 3 nodes formed"

# ---- three hosts: a namespace, a veth pair, php-fpm, ferry ------------------------------
addr_root() { echo "$NET.$((4 * $1 + 1))"; } # the root side of host N's link
addr_host() { echo "$NET.$((4 * $1 + 2))"; }
cat >"$DIR/worker.php" <<'PHP'
<?php
// Records each message it is given: id, ferry incarnation, attempt, redelivered flag,
// start and end time. One line per request, appended under a lock: it survives a kill -9
// of ferry (php-fpm writes it, not ferry).
$start = microtime(true);
$work = (int)($_SERVER['DEMO_WORK_US'] ?? 0);
if ($work > 0) { usleep($work); }
$line = sprintf("%s %s %s %s %.6f %.6f\n", $_POST['id'] ?? '-', $_SERVER['DEMO_INCARNATION'] ?? '0',
    $_SERVER['FERRY_ATTEMPT'] ?? '0', $_SERVER['FERRY_REDELIVERED'] ?? '0', $start, microtime(true));
file_put_contents($_SERVER['DEMO_LOG'], $line, FILE_APPEND | LOCK_EX);
echo "ok\n";
PHP
chmod 644 "$DIR/worker.php"

# The URLs a host's ferry uses: all three nodes through its link, each host starting with
# a different node so the connections spread over the cluster.
host_urls() {
  local h="$1" gw i out=()
  gw="$(addr_root "$h")"
  for i in 0 1 2; do
    local n="${NODES[$(((h - 1 + i) % 3))]}"
    out+=("\"amqp://guest:guest@$gw:${AMQP_PORT[$n]}/%2f\"")
  done
  local IFS=,
  echo "[${out[*]}]"
}
declare -A INCARNATION=()
write_ferry_config() {
  local h="$1" d="$DIR/h$1"
  cat >"$d/ferry.json" <<JSON
{
  "control": { "listen": "127.0.0.1:9180" },
  "shutdown_timeout_ms": 5000,
  "pools": { "php": { "address": "unix:$d/php-fpm.sock", "max_in_flight": $PREFETCH } },
  "sources": [
    { "name": "demo", "kind": "amqp", "urls": $(host_urls "$h"),
      "queue": "$QUEUE", "queue_type": "quorum", "prefetch": $PREFETCH,
      "heartbeat_s": $HEARTBEAT_S, "max_attempts": 10,
      "job": { "pool": "php", "script": "$DIR/worker.php",
               "params": { "DEMO_LOG": "$d/seen.log", "DEMO_INCARNATION": "${INCARNATION[$h]}",
                           "DEMO_WORK_US": "$((WORK_MS * 1000))" } } }
  ]
}
JSON
}
ferry_start() {
  local h="$1"
  INCARNATION[$h]=$((${INCARNATION[$h]:-0} + 1))
  write_ferry_config "$h"
  start_group "ferry-h$h" ip netns exec "$RUN-h$h" "$FERRY" run --config "$DIR/h$h/ferry.json" \
    --log-file "$DIR/h$h/ferry.log" </dev/null >/dev/null 2>>"$DIR/h$h/ferry.err"
}
# What host N's ferry says on its control endpoint (inside its namespace).
status() { ip netns exec "$RUN-h$1" curl -s --max-time 2 http://127.0.0.1:9180/status; }
# "state node waiting in_flight" of host N's source and pool ("down" when it does not answer).
status_line() {
  status "$1" 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except Exception:
    print("down - 0 0"); sys.exit()
src, pool = s["sources"][0], s["pools"][0]
print(src["state"], src["node"], src["waiting"] + pool["waiting"], pool["in_flight"])' ||
    echo "down - 0 0"
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit="$1" what="$2" deadline
  shift 2
  deadline=$(($(date +%s) + limit))
  until "$@"; do
    (($(date +%s) < deadline)) || { echo "cluster-demo: timed out waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}
# Process N has ended (absent, or a zombie not yet reaped).
gone() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 0
  [ -z "$state" ] || [ "$state" = Z ]
}
connected() { [ "$(status_line "$1" | cut -d' ' -f1)" = connected ]; }

for h in "${HOSTS[@]}"; do
  ns="$RUN-h$h"
  d="$DIR/h$h"
  mkdir -p "$d"
  chmod 755 "$d"
  : >"$d/seen.log"
  chmod 666 "$d/seen.log"
  ip netns add "$ns"
  ip link add "${SHORT}h${h}r" type veth peer name "${SHORT}h${h}n"
  ip link set "${SHORT}h${h}n" netns "$ns"
  ip addr add "$(addr_root "$h")/30" dev "${SHORT}h${h}r"
  ip link set "${SHORT}h${h}r" up
  ip netns exec "$ns" ip addr add "$(addr_host "$h")/30" dev "${SHORT}h${h}n"
  ip netns exec "$ns" ip link set "${SHORT}h${h}n" up
  ip netns exec "$ns" ip link set lo up
  cat >"$d/php-fpm.conf" <<CONF
[global]
pid = $d/php-fpm.pid
error_log = $d/php-fpm.log
daemonize = no

[$RUN-h$h]
user = $(id -un)
group = $(id -gn)
listen = $d/php-fpm.sock
pm = static
pm.max_children = $CHILDREN
catch_workers_output = yes
php_admin_value[display_errors] = Off
php_admin_value[log_errors] = On
CONF
  start_group "php-fpm-h$h" ip netns exec "$ns" "$PHP_FPM" -F -R -y "$d/php-fpm.conf" \
    </dev/null >/dev/null 2>&1
done
for h in "${HOSTS[@]}"; do
  wait_for 15 "php-fpm of host $h" test -S "$DIR/h$h/php-fpm.sock"
done
log "hosts ready: namespaces $RUN-h1..3 at $(addr_host 1), $(addr_host 2), $(addr_host 3); php-fpm with $CHILDREN children each"

# Host 3 first: its ferry declares the quorum queue on node c (which then leads it).
ferry_start 3
wait_for 60 "host 3's ferry to consume" connected 3
ferry_start 1
ferry_start 2
wait_for 60 "host 1's ferry to consume" connected 1
wait_for 60 "host 2's ferry to consume" connected 2
queue_info() { # "type leader messages" of the queue, asked of a running node
  local n
  for n in "$@"; do
    ctl "$n" list_queues -q --no-table-headers name type leader messages 2>/dev/null |
      awk -v q="$QUEUE" '$1 == q {print $2, $3, $4; found=1} END {exit !found}' && return 0
  done
  return 1
}
read -r QTYPE LEADER _ < <(queue_info a b c)
log "ferry on 3 hosts consuming $QUEUE ($QTYPE queue, leader $LEADER)"
[ "$QTYPE" = quorum ] || { echo "cluster-demo: $QUEUE is $QTYPE, not quorum" >&2; exit 1; }

# ---- publish ---------------------------------------------------------------------------
T_PUBLISH="$(now)"
log "publishing $MESSAGES messages to node a"
"$FERRY" publish --amqp "amqp://guest:guest@127.0.0.1:${AMQP_PORT[a]}/%2f" --queue "$QUEUE" \
  --count "$MESSAGES" '{"id": {n}}' >"$DIR/publish.out" 2>&1 ||
  { echo "cluster-demo: ferry publish failed:"; cat "$DIR/publish.out"; exit 1; } >&2
log "published (broker confirmed all) in $(python3 -c "print(f'{$(now) - $T_PUBLISH:.1f}')") s"

processed() { cat "$DIR"/h*/seen.log | wc -l; } # requests recorded so far
depth() { # messages in the queue (ready + unacked)
  local n
  for n in a b c; do
    ctl "$n" list_queues -q --no-table-headers name messages 2>/dev/null |
      awk -v q="$QUEUE" '$1 == q {print $2; found=1} END {exit !found}' && return 0
  done
  echo "?"
}
FAULTS="$DIR/faults.txt"          # one line per fault event, for the report
: >"$FAULTS"
event() { echo "$*" >>"$FAULTS"; } # event NAME TIME [DETAILS...]
# Messages not yet processed (ids never seen), recorded once a fault is over: a fault
# that hit an idle system proves nothing.
unprocessed() { echo $((MESSAGES - $(cut -d' ' -f1 "$DIR"/h*/seen.log | sort -u | wc -l))); }
after_fault() {
  local left
  left="$(unprocessed)"
  echo "left $1 $left" >>"$FAULTS"
  log "$left messages still unprocessed after fault $1"
}
# Host N recorded a message that started after time T.
started_after() { awk -v t="$2" '$5 > t {found=1; exit} END {exit !found}' "$DIR/h$1/seen.log"; }

# ---- fault 1: kill -9 the ferry of host 1, start it again ------------------------------
tenth_done() { (($(processed) >= MESSAGES / 10)); }
wait_for 300 "10% of the messages" tenth_done
read -r _ node1 _ _ < <(status_line 1)
kill -KILL -- "-${PGIDS[ferry-h1]}"
T=$(now)
event kill "$T" "$node1"
log "fault 1: kill -9 ferry on host 1 (it was on $node1); starting it again"
wait_for 10 "ferry h1 to die" gone "${PGIDS[ferry-h1]}"
ferry_start 1
wait_for 60 "host 1 to process again" started_after 1 "$T"
after_fault 1

# ---- fault 2: cut host 2 from the network ----------------------------------------------
pause 2
T=$(now)
ip link set "${SHORT}h2r" down
event cut "$T"
log "fault 2: host 2 cut from the network for $CUT_S s"
pause "$CUT_S"
ip link set "${SHORT}h2r" up
T_UP=$(now)
event up "$T_UP"
log "host 2 back on the network"
wait_for 120 "host 2 to process again" started_after 2 "$T_UP"
after_fault 2

# ---- fault 3: stop the node that leads the quorum queue, start it again ----------------
pause 2
read -r _ LEADER _ < <(queue_info a b c)
STOP="${LEADER#"$RUN-"}"
STOP="${STOP%%@*}"
affected=()
for h in "${HOSTS[@]}"; do
  read -r _ node _ _ < <(status_line "$h")
  [ "${node##*:}" = "${AMQP_PORT[$STOP]}" ] && affected+=("$h")
done
T=$(now)
log "fault 3: stopping RabbitMQ node $STOP (queue leader; ferry of host(s) ${affected[*]:-none} connected to it)"
ctl "$STOP" stop >/dev/null 2>&1 || true
wait_for 30 "node $STOP's process to end" gone "${PGIDS[rabbit-$STOP]}"
T_STOPPED=$(now)
event stop "$T" "$STOP" "$T_STOPPED" "${affected[*]:-}"
others=()
for n in "${NODES[@]}"; do [ "$n" = "$STOP" ] || others+=("$n"); done
for h in "${affected[@]}"; do
  wait_for 120 "host $h to process again" started_after "$h" "$T_STOPPED"
done
read -r _ NEW_LEADER _ < <(queue_info "${others[@]}") || NEW_LEADER="?"
log "queue leader now $NEW_LEADER; starting node $STOP again"
after_fault 3
T=$(now)
node_start "$STOP"
node_wait "$STOP"
event restart "$T" "$STOP" "$(now)"
log "node $STOP back in the cluster"

# ---- drain --------------------------------------------------------------------------------
idle() {
  [ "$(depth)" = 0 ] || return 1
  local h state node waiting in_flight
  for h in "${HOSTS[@]}"; do
    read -r state node waiting in_flight < <(status_line "$h")
    [ "$state" = connected ] && [ "$waiting" = 0 ] && [ "$in_flight" = 0 ] || return 1
  done
}
# Done when the queue is empty, every ferry idle and every id seen — or when that idle
# state has lasted 10 s with ids missing (the report then names them).
IDLE_SINCE=
drained() {
  if ! idle; then
    IDLE_SINCE=
    return 1
  fi
  (($(unprocessed) == 0)) && return 0
  IDLE_SINCE="${IDLE_SINCE:-$(date +%s)}"
  (($(date +%s) - IDLE_SINCE >= 10))
}
log "waiting for the queue to empty and every ferry to be idle"
wait_for "$TIMEOUT_S" "the queue to drain" drained
T_DONE=$(now)
for h in "${HOSTS[@]}"; do
  echo "status h$h $(status "$h")" >>"$DIR/final-status.txt"
done

# ---- report and checks ------------------------------------------------------------------
python3 - "$DIR" "$MESSAGES" "$PREFETCH" "$CUT_S" <<'PY'
import sys
from collections import Counter

d, total, prefetch, cut_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
records = {}
for h in (1, 2, 3):
    rows = []
    with open(f"{d}/h{h}/seen.log") as f:
        for line in f:
            i, inc, attempt, redelivered, start, end = line.split()
            rows.append((i, int(inc), int(attempt), redelivered, float(start), float(end)))
    records[h] = rows
events = {}
depths = {}
for line in open(f"{d}/faults.txt"):
    parts = line.split()
    if parts[0] == "left":
        depths[parts[1]] = parts[2]
    else:
        events[parts[0]] = parts[1:]

ids = Counter(r[0] for rows in records.values() for r in rows)
expected = {str(n) for n in range(1, total + 1)}
missing = expected - set(ids)
unknown = set(ids) - expected
all_rows = [r for rows in records.values() for r in rows]
duplicates = sum(c - 1 for c in ids.values())
redelivered = sum(1 for r in all_rows if r[3] == "1")

def first_start_after(h, t):
    starts = [r[4] for r in records[h] if r[4] > t]
    return min(starts) if starts else None

failed = []
print("== cluster demo report ==")
print(f"messages published: {total}")
for h in (1, 2, 3):
    with open(f"{d}/h{h}/ferry.log") as f:
        connects = sum(1 for line in f if "source demo: consuming" in line)
    print(f"host h{h}: {len(records[h])} requests, {len({r[0] for r in records[h]})} distinct ids,"
          f" {connects} connections that consumed")
print(f"requests in all: {len(all_rows)} ({redelivered} flagged redelivered by RabbitMQ)")

starts = [r[4] for r in all_rows]
ends = [r[5] for r in all_rows]
span = max(ends) - min(starts)
print(f"consumption: {span:.1f} s from the first request to the last")
print(f"aggregate rate: {len(set(ids)) / span:.0f} messages/s")

# Recovery after each fault, from the worker's records and each ferry's log: the time
# its source was consuming again ("source demo: consuming", one per connection), then
# the first request it started after that. Requests started in between came from the
# old connection (written before a kill, or in flight when a link went down).
from datetime import datetime

def consuming_times(h):
    times = []
    with open(f"{d}/h{h}/ferry.log") as f:
        for line in f:
            if "source demo: consuming" in line:
                stamp = line.split()[0].replace("Z", "+00:00")
                times.append(datetime.fromisoformat(stamp).timestamp())
    return times

def first_after(times, t):
    later = [x for x in times if x > t]
    return min(later) if later else None

def fmt(x):
    return f"{x:.2f} s" if x is not None else "never"

t_kill = float(events["kill"][0])
kill_consuming = first_after(consuming_times(1), t_kill)
kill_first = first_start_after(1, kill_consuming) if kill_consuming else None
kill_rec = kill_first - t_kill if kill_first else None
print(f"recovery: kill -9 ferry h1: {fmt(kill_rec)} from the kill to the restarted ferry's first request"
      f" (consuming after {fmt(kill_consuming - t_kill if kill_consuming else None)})")

t_cut, t_up = float(events["cut"][0]), float(events["up"][0])
cut_consuming = first_after(consuming_times(2), t_cut)
cut_first = first_start_after(2, max(t_up, cut_consuming or 0))
cut_rec = cut_first - t_up if cut_first else None
how = (f"reconnected {cut_consuming - t_up:.2f} s after the link came back"
       if cut_consuming else "its connection survived the cut")
print(f"recovery: network cut h2 ({cut_s} s): {fmt(cut_rec)} from the link coming back to h2's next request ({how})")

t_stop, node, t_stopped = float(events["stop"][0]), events["stop"][1], float(events["stop"][2])
affected = [int(h) for h in events["stop"][3:]]
stop_rec = []
for h in affected:
    moved = first_after(consuming_times(h), t_stop)
    first = first_start_after(h, moved) if moved else None
    stop_rec.append((h, first - t_stop if first else None))
    print(f"recovery: node {node} stopped: host h{h} (was connected to it): {fmt(first - t_stop if first else None)}"
          f" from the stop to its first request through another node (consuming after {fmt(moved - t_stop if moved else None)})")
# The queue's leader moved: the longest time in which no host started a request, from
# the stop until 5 s after the node was down.
window = sorted(x for x in starts if t_stop - 0.5 <= x <= t_stopped + 5)
gap = max((b - a for a, b in zip(window, window[1:])), default=None)
print(f"recovery: node {node} stopped: longest pause without a new request on any host: {fmt(gap)}"
      f" ({t_stopped - t_stop:.2f} s to stop the node)")
t_restart, t_back = float(events["restart"][0]), float(events["restart"][2])
print(f"recovery: node {node} restarted and rejoined in {t_back - t_restart:.2f} s")
for fault in ("1", "2", "3"):
    print(f"unprocessed after fault {fault}: {depths.get(fault, '?')}")

# Checks.
def check(name, ok, detail):
    print(f"check: {name}: {'ok' if ok else 'FAILED'} ({detail})")
    if not ok:
        failed.append(name)

check("every message processed", not missing and not unknown,
      f"{len(expected) - len(missing)} of {total} ids seen"
      + (f"; missing e.g. {sorted(missing, key=int)[:5]}" if missing else "")
      + (f"; unknown ids {sorted(unknown)[:5]}" if unknown else ""))
# What a fault can make run twice: the messages the broker had handed a ferry and not yet
# seen acked — at most its prefetch — for the ferry killed, the ferry cut, and each
# ferry connected to the stopped node.
faulted = 2 + len(affected)
bound = prefetch * faulted
check("duplicates within what was in flight", duplicates <= bound,
      f"{duplicates} duplicates <= {bound} = prefetch {prefetch} x {faulted} faulted ferry connections")
check("every fault hit a busy system",
      all(depths.get(f, "0") not in ("0", "?") for f in ("1", "2", "3")),
      "messages still unprocessed after each fault: "
      + ", ".join(depths.get(f, "?") for f in ("1", "2", "3")))
check("every fault recovered",
      kill_rec is not None and cut_rec is not None and all(x is not None for _, x in stop_rec),
      "each faulted host processed messages again")
print("result:", "PASS" if not failed else "FAIL: " + ", ".join(failed))
sys.exit(1 if failed else 0)
PY
