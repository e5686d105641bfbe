#!/usr/bin/env bash
# End to end: a real Prometheus evaluates the rules while the example service goes through
# a short scripted outage, and a real Alertmanager delivers the alerts to a webhook.
#
#   ops/e2e.sh          (about 90 s after the build; everything on 127.0.0.1)
#
# 1. installs Debian's `prometheus` and `prometheus-alertmanager` packages if missing;
# 2. builds `examples/api_service` and the testkit's `tds-server` and `chaos-proxy`
#    (before any timer starts);
# 3. starts two regions, each a tds-server (its SQLite file created with the example's
#    schema) behind a chaos-proxy with a control API: westeurope (preferred) and
#    northeurope; starts api_service with `--config` pointing at the proxies
#    (failback_hysteresis 5s instead of 30s, to keep the run short; northeurope is
#    `role = "read_only"`, a failover group's readable secondary);
# 4. sends a little traffic (GET /orders/N, POST /orders) and keeps reading in the
#    background;
# 5. starts a webhook receiver (ops/webhook_receiver.py), Alertmanager (route: every alert
#    to the webhook, resolved ones too, 1 s grouping) and Prometheus (1 s scrapes and
#    evaluations) with a TIME-COMPRESSED copy of ops/prometheus/rules.yml: every `for:`,
#    range and offset divided by 20 (ops/scale_rules.py: `for: 1m` -> 3s, `for: 5m` -> 15s,
#    `[10m]` -> 30s). Expressions, labels and annotations are those of rules.yml;
# 6. checks that Prometheus has the series and every rule loaded and healthy, and that
#    MssqlResilienceWatchdog reached the webhook (the alerting path works);
# 7. checks that no region or failover alert was delivered while both regions were fine;
# 8. black-holes westeurope for OUTAGE seconds through its proxy's control API
#    (POST /schedule), and checks that the webhook received, before the outage ended,
#    MssqlResilienceRegionUnhealthy{region="westeurope"},
#    MssqlResilienceRegionSwitched{intent="read",from="westeurope",to="northeurope"} and
#    MssqlResilienceFailoverActive{intent="read",region="northeurope"};
#    and that GET /status (the customer status line) said reads stale, writes unavailable;
# 9. checks that all three were delivered as resolved after the outage, and that
#    GET /status is back to operational.
# Every process is stopped and the temp directory removed on exit. Exit 0 = passed.
#
# Environment:
#   E2E_TIMEOUT     seconds for each start-up wait (default 60)
#   E2E_OUTAGE      seconds of the westeurope outage (default 30, at least 25: FailoverActive
#                   needs its 15 s plus the switch and the delivery)
#   E2E_CARGO_ARGS  extra cargo arguments for build, e.g. "--features prometheus,axum"
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$OPS_DIR")"
RULES="$OPS_DIR/prometheus/rules.yml"
TIMEOUT="${E2E_TIMEOUT:-60}"
OUTAGE="${E2E_OUTAGE:-30}"
# The rules' durations are divided by this (see the header).
SCALE=20
read -r -a CARGO_ARGS <<<"${E2E_CARGO_ARGS:-}"

log() { echo "e2e: $*" >&2; }
fail() {
    echo "e2e: FAILED: $*" >&2
    exit 1
}

case "$OUTAGE" in
    '' | *[!0-9]*)
        echo "e2e: E2E_OUTAGE must be whole seconds, not '$OUTAGE'" >&2
        exit 2
        ;;
esac
if [ "$OUTAGE" -lt 25 ]; then
    echo "e2e: E2E_OUTAGE must be at least 25, not $OUTAGE (FailoverActive needs 15 s + the switch + the delivery)" >&2
    exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mssql-resilience-e2e.XXXXXX")"
# Every process we start, by id; stopped in reverse order.
PIDS=()

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
    local rc=$? i f
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[$i]}"
    done
    if [ "$rc" -ne 0 ]; then
        for f in "$WORK"/*.out "$WORK"/*.err "$WORK/webhook.jsonl"; do
            if [ -s "$f" ]; then
                echo "---- last lines of $(basename "$f")" >&2
                tail -n 30 "$f" >&2
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
install_pkg() {
    log "installing the $1 package"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    install_pkg prometheus
fi
# Debian names the binary prometheus-alertmanager; upstream tarballs call it alertmanager.
ALERTMANAGER="$(command -v prometheus-alertmanager || command -v alertmanager || true)"
if [ -z "$ALERTMANAGER" ]; then
    install_pkg prometheus-alertmanager
    ALERTMANAGER="$(command -v prometheus-alertmanager || command -v alertmanager || true)"
fi
[ -n "$ALERTMANAGER" ] || fail "no alertmanager binary after installing prometheus-alertmanager"
for tool in prometheus promtool curl python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is required"
done

promtool check rules "$RULES" >/dev/null || fail "promtool check rules $RULES"
python3 "$OPS_DIR/scale_rules.py" "$RULES" "$SCALE" "$WORK/rules.yml"
promtool check rules "$WORK/rules.yml" >/dev/null || fail "the time-compressed rules do not load"

# ------------------------------------------------------------------ build (untimed)
# executable NAME KIND BUILD_JSON -> the path cargo reported for that target
executable() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
name, kind, path = sys.argv[1:]
exe = ""
for line in open(path):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    target = msg.get("target", {})
    if msg.get("reason") == "compiler-artifact" and target.get("name") == name \
            and kind in target.get("kind", []) and msg.get("executable"):
        exe = msg["executable"]
print(exe)
PY
}
cd "$REPO_DIR"
log "building the api_service example and the testkit's tds-server and chaos-proxy"
cargo build --example api_service "${CARGO_ARGS[@]}" \
    --message-format=json-render-diagnostics >"$WORK/build-service.json" ||
    fail "cargo build --example api_service ${CARGO_ARGS[*]}"
cargo build -p mssql-testkit --bin tds-server --bin chaos-proxy \
    --message-format=json-render-diagnostics >"$WORK/build-testkit.json" ||
    fail "cargo build -p mssql-testkit --bin tds-server --bin chaos-proxy"
SERVICE_BIN="$(executable api_service example "$WORK/build-service.json")"
TDS_BIN="$(executable tds-server bin "$WORK/build-testkit.json")"
PROXY_BIN="$(executable chaos-proxy bin "$WORK/build-testkit.json")"
for bin in "$SERVICE_BIN" "$TDS_BIN" "$PROXY_BIN"; do
    [ -n "$bin" ] && [ -x "$bin" ] ||
        fail "cargo build did not report every executable (api_service, tds-server, chaos-proxy)"
done

# Everything from here on is timed (the build above is not).
T_START=$SECONDS

# ------------------------------------------------------------------ helpers
# start NAME CMD...: runs CMD in the background (stdout NAME.out, stderr NAME.err); its
# pid goes into PIDS and into the variable PID_<NAME>.
start() {
    local name="$1"
    shift
    "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=("$!")
    printf -v "PID_${name//-/_}" '%s' "$!"
}

alive() {
    local var="PID_${1//-/_}"
    kill -0 "${!var}" 2>/dev/null
}

# wait_line NAME REGEX -> the first match of REGEX in NAME.out (fails on timeout or exit)
wait_line() {
    local name="$1" regex="$2" line deadline=$((SECONDS + TIMEOUT))
    while :; do
        line="$(grep -m1 -oE "$regex" "$WORK/$name.out" 2>/dev/null || true)"
        if [ -n "$line" ]; then
            echo "$line"
            return 0
        fi
        alive "$name" || fail "$name exited before printing /$regex/"
        [ "$SECONDS" -lt "$deadline" ] || fail "$name printed no /$regex/ within ${TIMEOUT}s"
        sleep 0.2
    done
}

# wait_ready NAME URL: until URL answers 2xx
wait_ready() {
    local name="$1" url="$2" deadline=$((SECONDS + TIMEOUT))
    until curl -fsS --max-time 2 "$url" >/dev/null 2>&1; do
        alive "$name" || fail "$name exited before $url answered"
        [ "$SECONDS" -lt "$deadline" ] || fail "$url not ready within ${TIMEOUT}s"
        sleep 0.3
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

ADDR_RE='127\.0\.0\.1:[0-9]+'

# ------------------------------------------------------------------ regions
: >"$WORK/regions.toml"
for region in westeurope northeurope; do
    # The example's schema, in the SQLite file the server will use (the testkit runs
    # T-SQL DDL like this one on SQLite unchanged).
    python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE orders (id INT NOT NULL PRIMARY KEY, customer_id UNIQUEIDENTIFIER NOT NULL, amount DECIMAL(18, 2) NOT NULL, created_at DATETIME2 NOT NULL, note NVARCHAR(200) NULL, sku VARCHAR(20) NULL)")
db.commit()' "$WORK/$region.db"
    start "tds-$region" "$TDS_BIN" --listen 127.0.0.1:0 --user app --password e2e-only \
        --database app --db-file "$WORK/$region.db"
    tds_addr="$(wait_line "tds-$region" "listening on $ADDR_RE" | sed 's/^listening on //')"
    start "proxy-$region" "$PROXY_BIN" --listen 127.0.0.1:0 --upstream "$tds_addr" \
        --control 127.0.0.1:0
    proxy_addr="$(wait_line "proxy-$region" "listening on $ADDR_RE" | sed 's/^listening on //')"
    control="$(wait_line "proxy-$region" "control on $ADDR_RE" | sed 's/^control on //')"
    printf -v "CONTROL_$region" '%s' "http://$control"
    cat >>"$WORK/regions.toml" <<TOML
[[regions]]
name = "$region"
host = "127.0.0.1"
port = ${proxy_addr##*:}
database = "app"
user = "app"
password = "e2e-only"
encryption = "not_supported"
$([ "$region" = northeurope ] && echo 'role = "read_only"    # a failover group'"'"'s readable secondary')

TOML
    log "region $region: tds-server $tds_addr behind chaos-proxy $proxy_addr (control $control)"
done
cat >>"$WORK/regions.toml" <<'TOML'
[failover]
# e2e only: 5 s of calm before failing back, instead of 30 s.
failback_hysteresis = "5s"
TOML

# ------------------------------------------------------------------ service
start service "$SERVICE_BIN" --listen 127.0.0.1:0 --config "$WORK/regions.toml"
SERVICE_URL="$(wait_line service "listening on http://$ADDR_RE" | sed 's/^listening on //')"
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
    alive service || fail "api_service exited before answering GET /health"
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
    log "traffic $n: POST /orders -> ${post:-none}, GET /orders/$n -> ${get:-none}"
done
[ "$get" = 200 ] || fail "GET /orders/5 after POST /orders: HTTP ${get:-none}, expected 200"
if curl -fsS --max-time 10 "$SERVICE_URL/metrics" >"$WORK/metrics.txt"; then
    log "GET /metrics: $(grep -cv '^#' "$WORK/metrics.txt" || true) samples"
else
    fail "GET $SERVICE_URL/metrics failed"
fi
# Reads in the background for the rest of the run (5 per second).
start reader bash -c "while :; do curl -s -o /dev/null --max-time 3 '$SERVICE_URL/orders/1'; sleep 0.2; done"

# ------------------------------------------------------------------ alerting path
start webhook python3 "$OPS_DIR/webhook_receiver.py" "$WORK/webhook.jsonl"
WEBHOOK_URL="$(wait_line webhook "listening on http://$ADDR_RE" | sed 's/^listening on //')"

AM_PORT="$(free_port)"
AM_URL="http://127.0.0.1:$AM_PORT"
cat >"$WORK/alertmanager.yml" <<YAML
route:
  receiver: webhook
  group_by: ['...']      # every alert on its own: one notification per change
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: "$WEBHOOK_URL/"
        send_resolved: true
YAML
log "starting alertmanager on $AM_URL"
# --cluster.listen-address= turns gossip off (it would listen on every interface).
start alertmanager "$ALERTMANAGER" --config.file="$WORK/alertmanager.yml" \
    --storage.path="$WORK/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= --log.level=warn
wait_ready alertmanager "$AM_URL/-/ready"

PROM_PORT="$(free_port)"
PROM_URL="http://127.0.0.1:$PROM_PORT"
mkdir -p "$WORK/data"
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "$WORK/rules.yml"
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$AM_PORT"]
scrape_configs:
  - job_name: api_service
    metrics_path: /metrics
    static_configs:
      - targets: ["$SERVICE_HOSTPORT"]
YAML
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "generated prometheus.yml is invalid"

log "starting prometheus on $PROM_URL"
start prometheus prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --rules.alert.resend-delay=1s --log.level=warn
wait_ready prometheus "$PROM_URL/-/ready"

# series_count QUERY -> number of series in an instant query's result ("error: ..." on failure)
series_count() {
    local body
    body="$(curl -sS --max-time 5 --get --data-urlencode "query=$1" "$PROM_URL/api/v1/query" 2>&1)" ||
        {
            echo "error: $body"
            return 0
        }
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
        alive service || fail "api_service exited while waiting for $q"
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
    if curl -fsS --max-time 5 "$PROM_URL/api/v1/rules" >"$WORK/rules.json" 2>"$WORK/rules.curl" &&
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
print("%d groups, %d alerts, %d recording rules loaded and evaluated" % (
    len(got_groups), len(got_alerts), len(got_records)))
PY
        log "$(cat "$WORK/rules.report")"
        break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        cat "$WORK/rules.report" "$WORK/rules.curl" >&2 2>/dev/null || true
        fail "/api/v1/rules does not show every rule of $RULES loaded and healthy"
    fi
    sleep 1
done

# ------------------------------------------------------------------ deliveries
# delivered STATUS ALERTNAME [LABEL=VALUE...] -> seconds since the epoch of the first
# notification with that status for an alert with those labels; empty if none yet.
delivered() {
    python3 - "$WORK/webhook.jsonl" "$@" <<'PY'
import json, sys
path, status, name, *pairs = sys.argv[1:]
want = dict(p.split("=", 1) for p in pairs)
want["alertname"] = name
for line in open(path):
    n = json.loads(line)
    if n["status"] == status and all(n["labels"].get(k) == v for k, v in want.items()):
        print(n["received"])
        break
PY
}

# await_delivery DEADLINE_EPOCH STATUS ALERTNAME [LABEL=VALUE...] -> epoch of delivery
await_delivery() {
    local until="$1" at
    shift
    while :; do
        at="$(delivered "$@")"
        if [ -n "$at" ]; then
            echo "$at"
            return 0
        fi
        alive service || fail "api_service exited while waiting for $*"
        alive alertmanager || fail "alertmanager exited while waiting for $*"
        alive prometheus || fail "prometheus exited while waiting for $*"
        if python3 -c "import sys, time; sys.exit(time.time() < $until)"; then
            return 1
        fi
        sleep 0.5
    done
}

now() { python3 -c 'import time; print(time.time())'; }
since() { python3 -c "print('%.1f' % ($1 - $2))"; }

# The watchdog proves the path: rules -> Prometheus -> Alertmanager -> webhook.
t="$(now)"
await_delivery "$(python3 -c "print($t + $TIMEOUT)")" firing MssqlResilienceWatchdog >/dev/null ||
    fail "MssqlResilienceWatchdog was not delivered to the webhook within ${TIMEOUT}s"
log "MssqlResilienceWatchdog delivered: Prometheus -> Alertmanager -> webhook works"

# A healthy stretch: give the compressed `for:`s time to elapse, then nothing about
# regions or failover may have been delivered.
sleep 8
QUIET="$(python3 - "$WORK/webhook.jsonl" <<'PY'
import json, sys
bad = sorted({json.dumps(n["labels"], sort_keys=True) for n in map(json.loads, open(sys.argv[1]))
              if n["labels"].get("alertname") != "MssqlResilienceWatchdog"})
print("\n".join(bad))
PY
)"
[ -z "$QUIET" ] || fail "alerts delivered while both regions were healthy: $QUIET"
log "healthy stretch: only the watchdog was delivered"

# expect_status WANT: GET /status (the customer status line) has level/reads/writes WANT
expect_status() {
    local got
    got="$(curl -sS --max-time 5 "$SERVICE_URL/status" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("%s/%s/%s %s" % (d["level"], d["reads"], d["writes"], d["message"]))')" ||
        fail "GET $SERVICE_URL/status: no status document"
    [ "${got%% *}" = "$1" ] || fail "GET /status: $got; expected $1"
    log "GET /status: $got"
}
expect_status operational/normal/normal

# ------------------------------------------------------------------ outage
CONTROL_URL="$CONTROL_westeurope"
printf '[[phase]]\nfrom = "0s"\nto = "%ss"\nname = "e2e outage"\nmode = "blackhole"\n' "$OUTAGE" \
    >"$WORK/outage.toml"
curl -fsS --max-time 5 -X POST --data-binary @"$WORK/outage.toml" "$CONTROL_URL/schedule" \
    >"$WORK/schedule.json" || fail "POST $CONTROL_URL/schedule failed"
t0="$(now)"
t_end="$(python3 -c "print($t0 + $OUTAGE)")"
log "westeurope black-holed for ${OUTAGE}s ($(cat "$WORK/schedule.json"))"

# alert NAME LABELS... as one string, for messages
for spec in \
    "MssqlResilienceRegionUnhealthy region=westeurope" \
    "MssqlResilienceRegionSwitched intent=read from=westeurope to=northeurope" \
    "MssqlResilienceFailoverActive intent=read region=northeurope"; do
    read -r -a args <<<"$spec"
    at="$(await_delivery "$t_end" firing "${args[@]}")" ||
        fail "${args[*]}: not delivered as firing before the outage ended (${OUTAGE}s)"
    log "firing   ${args[*]}: delivered $(since "$at" "$t0") s after the outage started"
done

# What customers are told meanwhile: reads come from the read-only secondary, writes have
# nowhere to go.
expect_status degraded/stale/unavailable

deadline="$(python3 -c "print($t_end + $TIMEOUT)")"
for spec in \
    "MssqlResilienceRegionUnhealthy region=westeurope" \
    "MssqlResilienceRegionSwitched intent=read from=westeurope to=northeurope" \
    "MssqlResilienceFailoverActive intent=read region=northeurope"; do
    read -r -a args <<<"$spec"
    at="$(await_delivery "$deadline" resolved "${args[@]}")" ||
        fail "${args[*]}: not delivered as resolved within ${TIMEOUT}s of the outage's end"
    # A resolution sent before the outage ended would be a flap, not a recovery (except
    # RegionSwitched, whose window ends on its own 30 s after the switch).
    if [ "${args[0]}" != MssqlResilienceRegionSwitched ] &&
        python3 -c "import sys; sys.exit(not $at < $t_end)"; then
        fail "${args[*]}: resolved $(since "$at" "$t0") s after the outage started, before it ended"
    fi
    log "resolved ${args[*]}: delivered $(since "$at" "$t0") s after the outage started (it ended at ${OUTAGE} s)"
done

expect_status operational/normal/normal

log "PASSED: Prometheus evaluated ops/prometheus/rules.yml (time-compressed x$SCALE) on api_service through a ${OUTAGE}s outage; Alertmanager delivered the region and failover alerts during it and their resolution after it ($((SECONDS - T_START)) s after the build)"
