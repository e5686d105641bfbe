#!/usr/bin/env bash
# Static checks of the ops/ artefacts:
#   - promtool check rules  ops/prometheus/rules.yml
#   - promtool test rules   ops/prometheus/rules_test.yml  (unit tests of every alert)
#   - the recorded incidents (ops/prometheus/recorded/): promtool confirms, minute by
#     minute, the pinned alert timeline of each recording, and the pins meet
#     expectations.yml (ops/recorded.py check)
#   - the Grafana dashboard is valid JSON with the expected inputs/variables
# Installs Debian's `prometheus` package (which ships promtool) when promtool is missing,
# and `python3-yaml` when Python's yaml module is.
# Runnable from any directory; exits non-zero on the first failure.
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found, installing the prometheus package" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v python3 >/dev/null 2>&1 || { echo "check.sh: python3 is required" >&2; exit 1; }
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    echo "check.sh: Python's yaml module not found, installing python3-yaml" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
fi

echo "== promtool check rules"
promtool check rules "$OPS_DIR/prometheus/rules.yml"

echo "== promtool test rules"
# rules_test.yml names rules.yml relative to itself, so run from its directory.
(cd "$OPS_DIR/prometheus" && promtool test rules rules_test.yml)

echo "== recorded incidents: alert timelines over replayed series"
python3 "$OPS_DIR/recorded.py" check

echo "== grafana dashboard"
python3 -m json.tool "$OPS_DIR/grafana/mssql-resilience.json" >/dev/null
python3 - "$OPS_DIR/grafana/mssql-resilience.json" <<'PY'
import json, sys
path = sys.argv[1]
d = json.load(open(path))
errors = []
if d.get("schemaVersion", 0) < 36:
    errors.append("schemaVersion < 36")
if not any(i.get("name") == "DS_PROMETHEUS" for i in d.get("__inputs", [])):
    errors.append("no DS_PROMETHEUS in __inputs")
variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
if variables.get("datasource", {}).get("type") != "datasource":
    errors.append("no `datasource` templating variable")
if "label_values(mssql_resilience_region_healthy, region)" not in json.dumps(variables.get("region", {})):
    errors.append("no `region` variable from label_values(mssql_resilience_region_healthy, region)")
ids, targets = set(), 0
for p in d.get("panels", []):
    if p["id"] in ids:
        errors.append(f"duplicate panel id {p['id']}")
    ids.add(p["id"])
    if p.get("type") == "row":
        continue
    if not p.get("targets"):
        errors.append(f"panel {p.get('title')!r} has no queries")
    for t in p.get("targets", []):
        targets += 1
        if not t.get("expr", "").strip():
            errors.append(f"panel {p.get('title')!r} has an empty query")
        if t.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"panel {p.get('title')!r} does not use the datasource variable")
if errors:
    print("\n".join(f"  FAILED: {e}" for e in errors))
    sys.exit(1)
print(f"  SUCCESS: {len(ids)} panels, {targets} queries, schemaVersion {d['schemaVersion']}")
PY

echo "ops/check.sh: all checks passed"
