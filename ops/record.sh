#!/usr/bin/env bash
# Regenerates the recorded incidents in ops/prometheus/recorded/:
#
#   ops/record.sh              # replay + record every recording (~3 minutes), then pin
#   ops/record.sh --pin-only   # keep the recorded series, re-pin the alert timelines
#
# For each recording NAME below:
# 1. `incident_replay --record-metrics` (release build) replays its timeline and writes
#    the middleware arm's exposition, one scrape per replay second, as promtool
#    input_series (1 replay second = 1 minute of series time), to a temp file;
# 2. `ops/recorded.py filter` keeps the series the alerts of rules.yml read:
#    NAME.series.yml;
# 3. `ops/recorded.py pin` evaluates rules.yml over it with promtool: NAME.alerts.yml,
#    the minutes in which each alert fired;
# 4. `ops/recorded.py verify` holds the pin to expectations.yml; a failure here means the
#    rules (or the library) no longer alert as the expectations say: fix that, do not
#    commit the recording.
# 5. rewrites the "fired in the recorded 2023 replay" cells of the README alert tables.
# Review the diff of the .alerts.yml files (and the READMEs) before committing them.
#
# Environment: CARGO (default: cargo), CARGO_TARGET_DIR (default: target).
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$OPS_DIR")"
RECORDED="$OPS_DIR/prometheus/recorded"
CARGO="${CARGO:-cargo}"

# NAME  timeline file (relative to the repository)  healthy tail after the timeline (long
# enough for the fail-back, 32-43 s after the last outage, RegionSwitched's 10 minutes
# and 5 quiet minutes)
RECORDINGS=(
    "incident-2023-09-15 examples/incident-2023-09-15.toml 20s"
    "05-one-way-blackhole examples/scenarios/05-one-way-blackhole.toml 60s"
)

pin_only=0
case "${1:-}" in
    "") ;;
    --pin-only) pin_only=1 ;;
    *)
        echo "usage: ops/record.sh [--pin-only]" >&2
        exit 2
        ;;
esac

command -v promtool >/dev/null 2>&1 || {
    echo "record.sh: promtool is required (ops/check.sh installs it)" >&2
    exit 1
}

if [ "$pin_only" -eq 0 ]; then
    cd "$REPO_DIR"
    "$CARGO" build --release --example incident_replay
    bin="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/examples/incident_replay"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/mssql-resilience-record.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    for entry in "${RECORDINGS[@]}"; do
        read -r name timeline tail <<<"$entry"
        echo "== recording $name ($timeline)"
        # Default load (200 req/s, 10 % writes, seed 1, no failover-group flip).
        "$bin" --timeline "$timeline" --record-metrics "$tmp/$name.raw.yml" --record-tail "$tail" \
            --json "$tmp/$name.json" --svg "$tmp/$name.svg" >"$tmp/$name.log"
        tail -n 3 "$tmp/$name.log"
        python3 "$OPS_DIR/recorded.py" filter "$tmp/$name.raw.yml" "$name"
    done
fi

status=0
for entry in "${RECORDINGS[@]}"; do
    read -r name _ <<<"$entry"
    python3 "$OPS_DIR/recorded.py" pin "$name"
    python3 "$OPS_DIR/recorded.py" verify "$name" || status=1
done
# The README alert tables say when each alert fired in the 2023 recording.
python3 "$OPS_DIR/recorded.py" tables
exit "$status"
