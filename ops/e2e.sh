#!/usr/bin/env bash
# End-to-end check: a real Prometheus scrapes the example service and loads our rules.
#
#   ops/e2e.sh
#
# 1. installs Debian's `prometheus` package if prometheus/promtool are missing;
# 2. builds the example (`cargo build --example api_service`, before any timer starts);
# 3. starts it with `--listen 127.0.0.1:0` (it starts its own embedded test regions)
#    and waits for its `listening on http://127.0.0.1:PORT` line;
# 4. sends a little traffic (GET /orders/N, POST /orders), 4xx/5xx are fine;
# 5. starts Prometheus on a free loopback port, scraping the service every second with
#    ops/prometheus/rules.yml loaded;
# 6. waits until Prometheus has db_client_operation_duration_seconds_count and
#    mssql_resilience_region_healthy series, and until /api/v1/rules lists both rule
#    groups with every alert of rules.yml and no rule in error.
# Both processes and the temp directory are always cleaned up. Exit 0 = passed.
#
# Environment:
#   E2E_TIMEOUT     seconds for each wait (default 60)
#   E2E_CARGO_ARGS  extra cargo arguments for build, e.g. "--features prometheus,axum"
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$OPS_DIR")"
RULES="$OPS_DIR/prometheus/rules.yml"
TIMEOUT="${E2E_TIMEOUT:-60}"
read -r -a CARGO_ARGS <<<"${E2E_CARGO_ARGS:-}"

log() { echo "e2e: $*" >&2; }
fail() {
    echo "e2e: FAILED: $*" >&2
    exit 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mssql-resilience-e2e.XXXXXX")"
SERVICE_PID=""
PROM_PID=""

stop_pid() {
    # Stop one process we started (and its direct children), by id.
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$PROM_PID"
    stop_pid "$SERVICE_PID"
    if [ "$rc" -ne 0 ]; then
        for f in service.out service.err prometheus.log; do
            if [ -s "$WORK/$f" ]; then
                echo "---- last lines of $f" >&2
                tail -n 30 "$WORK/$f" >&2
            fi
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ tools
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    log "installing the prometheus package"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
for tool in prometheus promtool curl python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is required"
done

promtool check rules "$RULES" >/dev/null || fail "promtool check rules $RULES"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ------------------------------------------------------------------ build (untimed)
log "building the api_service example"
cd "$REPO_DIR"
cargo build --example api_service "${CARGO_ARGS[@]}" \
    --message-format=json-render-diagnostics >"$WORK/build.json" ||
    fail "cargo build --example api_service ${CARGO_ARGS[*]}"
SERVICE_BIN="$(python3 - "$WORK/build.json" <<'PY'
import json, sys
exe = ""
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "api_service" \
            and "example" in msg.get("target", {}).get("kind", []) and msg.get("executable"):
        exe = msg["executable"]
print(exe)
PY
)"
[ -n "$SERVICE_BIN" ] && [ -x "$SERVICE_BIN" ] || fail "cargo build did not report an api_service executable"

# ------------------------------------------------------------------ service
log "starting $SERVICE_BIN --listen 127.0.0.1:0"
"$SERVICE_BIN" --listen 127.0.0.1:0 </dev/null >"$WORK/service.out" 2>"$WORK/service.err" &
SERVICE_PID=$!

SERVICE_URL=""
deadline=$((SECONDS + TIMEOUT))
while [ -z "$SERVICE_URL" ]; do
    SERVICE_URL="$(grep -m1 -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$WORK/service.out" 2>/dev/null |
        sed 's/^listening on //' || true)"
    [ -n "$SERVICE_URL" ] && break
    kill -0 "$SERVICE_PID" 2>/dev/null || fail "api_service exited before printing 'listening on http://127.0.0.1:PORT'"
    [ "$SECONDS" -lt "$deadline" ] || fail "no 'listening on http://127.0.0.1:PORT' line from api_service within ${TIMEOUT}s"
    sleep 0.2
done
SERVICE_HOSTPORT="${SERVICE_URL#http://}"
log "api_service is at $SERVICE_URL"

# Any HTTP status will do (health may be 503 while a region is down); no answer will not.
deadline=$((SECONDS + TIMEOUT))
while :; do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$SERVICE_URL/health" || true)"
    case "$code" in
        "" | 000) ;;
        *) break ;;
    esac
    kill -0 "$SERVICE_PID" 2>/dev/null || fail "api_service exited before answering GET /health"
    [ "$SECONDS" -lt "$deadline" ] || fail "GET $SERVICE_URL/health: no HTTP answer within ${TIMEOUT}s"
    sleep 0.5
done
log "GET /health -> $code"

# ------------------------------------------------------------------ traffic
for n in 1 2 3 4 5; do
    post="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
        -H 'content-type: application/json' --data "{\"id\": $n, \"note\": \"x\"}" \
        "$SERVICE_URL/orders" || true)"
    get="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$SERVICE_URL/orders/$n" || true)"
    get1="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$SERVICE_URL/orders/1" || true)"
    log "traffic $n: POST /orders -> ${post:-none}, GET /orders/$n -> ${get:-none}, GET /orders/1 -> ${get1:-none}"
done
if curl -fsS --max-time 10 "$SERVICE_URL/metrics" >"$WORK/metrics.txt"; then
    log "GET /metrics: $(grep -cv '^#' "$WORK/metrics.txt" || true) samples"
else
    fail "GET $SERVICE_URL/metrics failed"
fi

# ------------------------------------------------------------------ prometheus
PROM_PORT="$(free_port)"
PROM_URL="http://127.0.0.1:$PROM_PORT"
mkdir -p "$WORK/data"
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "$RULES"
scrape_configs:
  - job_name: api_service
    metrics_path: /metrics
    static_configs:
      - targets: ["$SERVICE_HOSTPORT"]
YAML
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "generated prometheus.yml is invalid"

log "starting prometheus on $PROM_URL"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn \
    </dev/null >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!

deadline=$((SECONDS + TIMEOUT))
until curl -fsS --max-time 2 "$PROM_URL/-/ready" >/dev/null 2>&1; do
    kill -0 "$PROM_PID" 2>/dev/null || fail "prometheus exited (see prometheus.log below)"
    [ "$SECONDS" -lt "$deadline" ] || fail "prometheus not ready within ${TIMEOUT}s"
    sleep 0.5
done

# series_count QUERY -> number of series in an instant query's result ("error: ..." on failure)
series_count() {
    local body
    body="$(curl -sS --max-time 5 --get --data-urlencode "query=$1" "$PROM_URL/api/v1/query" 2>&1)" ||
        { echo "error: $body"; return 0; }
    printf '%s' "$body" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError as e:
    print("error: not JSON: %s" % e); sys.exit(0)
if d.get("status") != "success":
    print("error: %s" % d.get("error")); sys.exit(0)
print(len(d["data"]["result"]))'
}

for q in db_client_operation_duration_seconds_count mssql_resilience_region_healthy; do
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        n="$(series_count "$q")"
        case "$n" in
            "" | error* | 0) ;;
            *) break ;;
        esac
        kill -0 "$SERVICE_PID" 2>/dev/null || fail "api_service exited while waiting for $q"
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "---- last query answer for $q: ${n:-empty}" >&2
            echo "---- scrape targets:" >&2
            curl -sS --max-time 5 "$PROM_URL/api/v1/targets" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print("  %s health=%s lastError=%r" % (t["scrapeUrl"], t["health"], t["lastError"]))' >&2 || true
            echo "---- metric names the service exposes:" >&2
            grep -v '^#' "$WORK/metrics.txt" | sed 's/[{ ].*//' | sort -u | head -n 50 >&2 || true
            fail "Prometheus has no series for $q after ${TIMEOUT}s"
        fi
        sleep 1
    done
    log "Prometheus has $n series of $q"
done

# ------------------------------------------------------------------ rules
deadline=$((SECONDS + TIMEOUT))
while :; do
    if curl -fsS --max-time 5 "$PROM_URL/api/v1/rules" >"$WORK/rules.json" 2>"$WORK/rules.err" &&
        python3 - "$WORK/rules.json" "$RULES" >"$WORK/rules.report" 2>&1 <<'PY'; then
import json, re, sys
rules = json.load(open(sys.argv[1]))["data"]["groups"]
text = open(sys.argv[2]).read()
want_groups = set(re.findall(r"^\s*-\s*name:\s*(\S+)\s*$", text, re.M))
want_alerts = set(re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", text, re.M))
want_records = set(re.findall(r"^\s*-\s*record:\s*(\S+)\s*$", text, re.M))
got_groups = {g["name"] for g in rules}
got_alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
got_records = {r["name"] for g in rules for r in g["rules"] if r["type"] == "recording"}
problems = []
if want_groups - got_groups:
    problems.append("rule groups not loaded: %s" % sorted(want_groups - got_groups))
if want_alerts - got_alerts:
    problems.append("alerts not loaded: %s" % sorted(want_alerts - got_alerts))
if want_records - got_records:
    problems.append("recording rules not loaded: %s" % sorted(want_records - got_records))
for g in rules:
    for r in g["rules"]:
        if r.get("health") != "ok":
            problems.append("%s: health=%s %s" % (r["name"], r.get("health"), r.get("lastError", "")))
if problems:
    print("\n".join(problems))
    sys.exit(1)
firing = sorted({(a["labels"]["alertname"], a["state"]) for g in rules for r in g["rules"]
                 if r["type"] == "alerting" for a in r.get("alerts", [])})
print("%d groups, %d alerts, %d recording rules loaded and evaluated; active alerts: %s" % (
    len(got_groups), len(got_alerts), len(got_records),
    ", ".join("%s(%s)" % f for f in firing) or "none"))
PY
        log "$(cat "$WORK/rules.report")"
        break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        cat "$WORK/rules.report" "$WORK/rules.err" >&2 2>/dev/null || true
        fail "/api/v1/rules does not show every rule of $RULES loaded and healthy"
    fi
    sleep 1
done

log "PASSED: Prometheus scraped api_service and evaluated ops/prometheus/rules.yml"
