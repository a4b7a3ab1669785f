#!/bin/bash
cd /work/main
for round in 1 2 3; do
  for which in before after; do
    bin=/work/main/target/release/ferry; [ $which = before ] && bin=/work/before/target/release/ferry
    for row in redis amqp; do
      if [ $row = redis ]; then args="--source redis --php-script benches/null.php --pool 4 --count 20000 --limits --json"; else args="--source amqp --prefetch 8 --php-script benches/null.php --pool 4 --count 20000 --limits --json"; fi
      $bin bench $args 2>/dev/null > /tmp/bench-$round-$which-$row.json
      python3 - "$round" "$which" "$row" <<'PY'
import json,sys
d=json.load(open(f"/tmp/bench-{sys.argv[1]}-{sys.argv[2]}-{sys.argv[3]}.json"))
def find(d):
    if isinstance(d,dict) and 'throughput' in d and 'ferry' in d: return d
    if isinstance(d,dict):
        for v in d.values():
            r=find(v)
            if r: return r
    if isinstance(d,list):
        for v in d:
            r=find(v)
            if r: return r
f=find(d)
lim=d.get('limits') or {}
print(sys.argv[1:], round(f['throughput']), 'msg/s', round(f['ferry']['cpu_us_per_message'],1), 'us/msg', 'lost', f['accounting']['lost'], 'limits', json.dumps({k:(round(v.get('throughput',0)) if isinstance(v,dict) else v) for k,v in lim.items()})[:200])
PY
    done
  done
done
