#!/usr/bin/env bash
# A short incident replay (a few seconds of the compressed timeline, with the
# failover-group flip) as a smoke test: the report has every field, the middleware arm
# lost and duplicated no write.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/replay-smoke
mkdir -p "$out"
cargo build --example incident_replay
./target/debug/examples/incident_replay --duration 8s --flip \
  --json "$out/report.json" --svg "$out/plot.svg"
python3 - "$out/report.json" "$out/plot.svg" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for arm in ("baseline", "middleware"):
    a = report["arms"][arm]
    for key in ("reads", "writes", "latency_ms", "over_deadline", "db_attempts_per_request",
                "outcome_unknown", "lost_writes", "duplicate_writes"):
        assert key in a, f"arms.{arm}.{key} missing"
    for key in ("p50", "p99", "max"):
        assert key in a["latency_ms"], f"arms.{arm}.latency_ms.{key} missing"
    for kind in ("reads", "writes"):
        assert "success_rate" in a[kind], f"arms.{arm}.{kind}.success_rate missing"
m = report["arms"]["middleware"]
for key in ("failover_s", "failback_s"):
    assert key in m, f"arms.middleware.{key} missing"
assert m["reads"]["total"] > 0 and m["writes"]["total"] > 0, "no load was generated"
assert m["lost_writes"] == 0, f"middleware lost {m['lost_writes']} acknowledged writes"
assert m["duplicate_writes"] == 0, f"middleware duplicated {m['duplicate_writes']} writes"
svg = open(sys.argv[2]).read()
assert svg.startswith("<svg") and "polyline" in svg, "the plot has no data"
print("replay smoke test: report complete, middleware lost 0 and duplicated 0 writes")
PY
