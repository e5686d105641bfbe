#!/usr/bin/env bash
# Incident replay smoke tests (debug build):
# 1. A short replay of the 2023 timeline (a few seconds, with the failover-group flip):
#    the report has every field for every arm, the middleware arm lost and duplicated no
#    write, the plot has data.
# 2. A short scenario suite (examples/scenarios, each scenario compressed to 3 s, each
#    without and with its flip, 2 s deadlines to keep it short): the JSON has every
#    scenario and every arm, and the middleware arm lost and duplicated no write.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/replay-smoke
mkdir -p "$out"
# The replay's own unit tests (timeline format, oracle, report, suite): `cargo test
# --workspace` builds examples but does not run their tests.
cargo test --example incident_replay
cargo build --example incident_replay
bin="$out/incident_replay"
# A private copy: the target directory may be shared with other builds.
cp "${CARGO_TARGET_DIR:-target}/debug/examples/incident_replay" "$bin"

"$bin" --duration 8s --flip --json "$out/report.json" --svg "$out/plot.svg"
python3 - "$out/report.json" "$out/plot.svg" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for arm in ("baseline", "middleware", "peer"):
    assert arm in report["arms"], f"arms.{arm} missing"
    a = report["arms"][arm]
    for key in ("reads", "writes", "latency_ms", "over_deadline", "db_attempts_per_request",
                "outcome_unknown", "lost_writes", "duplicate_writes", "achievable",
                "of_achievable"):
        assert key in a, f"arms.{arm}.{key} missing"
    for key in ("p50", "p99", "max"):
        assert key in a["latency_ms"], f"arms.{arm}.latency_ms.{key} missing"
    for kind in ("reads", "writes"):
        assert "success_rate" in a[kind], f"arms.{arm}.{kind}.success_rate missing"
        assert kind in a["achievable"], f"arms.{arm}.achievable.{kind} missing"
m = report["arms"]["middleware"]
for key in ("failover_s", "failback_s"):
    assert key in m, f"arms.middleware.{key} missing"
assert m["reads"]["total"] > 0 and m["writes"]["total"] > 0, "no load was generated"
assert m["lost_writes"] == 0, f"middleware lost {m['lost_writes']} acknowledged writes"
assert m["duplicate_writes"] == 0, f"middleware duplicated {m['duplicate_writes']} writes"
svg = open(sys.argv[2]).read()
assert svg.startswith("<svg") and svg.count("<polyline") >= 3, "the plot lacks a line per arm"
print("replay smoke test: report complete, middleware lost 0 and duplicated 0 writes")
PY

"$bin" --suite examples/scenarios --duration 3s --budget 2s \
  --json "$out/suite.json" --plots "$out/suite"
python3 - "$out/suite.json" examples/scenarios <<'PY'
import json, os, sys
report = json.load(open(sys.argv[1]))
scenarios = sorted(f[:-5] for f in os.listdir(sys.argv[2]) if f.endswith(".toml"))
runs = {(r["scenario"], r["flip"]): r for r in report["runs"]}
for s in scenarios:
    for flip in (False, True):
        assert (s, flip) in runs, f"scenario {s} (flip={flip}) missing from the suite report"
        arms = runs[(s, flip)]["report"]["arms"]
        for arm in ("baseline", "middleware", "peer"):
            assert arm in arms, f"{s} (flip={flip}): arms.{arm} missing"
            for key in ("reads", "writes", "achievable", "of_achievable", "lost_writes",
                        "duplicate_writes", "over_deadline", "latency_ms"):
                assert key in arms[arm], f"{s} (flip={flip}): arms.{arm}.{key} missing"
        m = arms["middleware"]
        assert m["reads"]["total"] > 0, f"{s} (flip={flip}): no load was generated"
        assert m["lost_writes"] == 0, f"{s} (flip={flip}): middleware lost {m['lost_writes']} writes"
        assert m["duplicate_writes"] == 0, \
            f"{s} (flip={flip}): middleware duplicated {m['duplicate_writes']} writes"
print(f"suite smoke test: {len(scenarios)} scenarios x 2, every arm reported, "
      "middleware lost 0 and duplicated 0 writes")
PY
