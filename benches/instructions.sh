#!/usr/bin/env bash
# Instructions per call (client + in-process server), counted by valgrind's callgrind:
# repeatable whatever else the machine is doing, unlike wall time on 2 shared cores.
# Per call = (I(N2) - I(N1)) / (N2 - N1), so setup and warm-up cancel out.
# Usage: bash benches/instructions.sh [select1|rows100]
set -euo pipefail
cd "$(dirname "$0")/.."
query=${1:-select1}
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian package valgrind)"; exit 1; }
bin=$(cargo bench -p mssql-resilience-benches --bench stack --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "stack" and m.get("executable"):
        print(m["executable"])')
n1=200; n2=1200
count() {
  STACK_BENCH_COUNT="$1:$query:$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
declare -A per
for side in raw_nocheck service stack; do
  a=$(count "$side" "$n1"); b=$(count "$side" "$n2")
  per[$side]=$(( (b - a) / (n2 - n1) ))
  echo "$query $side: ${per[$side]} instructions per call"
done
python3 - "${per[raw_nocheck]}" "${per[service]}" "${per[stack]}" <<'PY'
import sys
raw, service, stack = map(int, sys.argv[1:])
print(f"stack / raw_nocheck = {stack / raw:.3f}  (overhead {100 * (stack / raw - 1):+.1f} %, target <= 3 %)")
print(f"stack / service     = {stack / service:.3f}  (the layers alone: {100 * (stack / service - 1):+.1f} %)")
PY
