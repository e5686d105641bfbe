#!/usr/bin/env python3
"""Alert tests over series recorded from the incident replay (ops/prometheus/recorded/).

Three files per recording NAME, all in ops/prometheus/recorded/:

  NAME.series.yml   the replay's recording (`incident_replay --record-metrics`), cut down
                    to the series the alerts use: one promtool test group without
                    assertions (`interval: 1m` + `input_series`). 1 replay second = 1 minute.
  NAME.alerts.yml   the pinned alert timeline: for every alert that fired, the stretches of
                    minutes in which it was firing. Written by `pin` (ops/record.sh), never
                    by hand.
  expectations.yml  hand-written, for every recording: which alerts must fire and by when
                    (relative to the outage windows), by when each resolves, which alerts
                    may fire at all, and the stretches where nothing may fire.

Subcommands:

  filter RAW NAME   keep only the series the alerts use (transitively through recording
                    rules) from RAW, write NAME.series.yml
  pin NAME          evaluate rules.yml over NAME.series.yml with promtool, write NAME.alerts.yml
  build NAME OUT    write OUT: a promtool test file = NAME.series.yml + assertions that the
                    firing alerts are exactly those of NAME.alerts.yml, minute by minute
  verify NAME       check NAME.alerts.yml against expectations.yml
  table             the "fired in the recorded 2023 replay" cell of each alert
  tables            rewrite that cell in the alert tables of README.md and ops/README.md
  check             for every recording in expectations.yml: build, run promtool on the
                    built test, verify; and the alert tables of README.md and ops/README.md
                    say when each alert fired in the 2023 recording (ops/check.sh runs this)

Drift: if rules.yml changes how or when an alert fires on a recording, promtool fails on
the built test (it pins every minute). Re-pinning (ops/record.sh --pin-only) makes promtool
pass again only if the new timeline still satisfies expectations.yml (`verify`). A new
recording is held to the same expectations. Stale pins (a series file newer than its pin)
are caught by the promtool run as well, since the pin then no longer matches.
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

OPS = os.path.dirname(os.path.abspath(__file__))
PROM = os.path.join(OPS, "prometheus")
RECORDED = os.path.join(PROM, "recorded")
RULES = os.path.join(PROM, "rules.yml")
EXPECTATIONS = os.path.join(RECORDED, "expectations.yml")
WATCHDOG = "MssqlResilienceWatchdog"
FIRING = 'ALERTS{alertstate="firing", alertname!="%s"}' % WATCHDOG


def fail(msg):
    print("recorded.py: " + msg, file=sys.stderr)
    sys.exit(1)


def series_path(name):
    return os.path.join(RECORDED, name + ".series.yml")


def alerts_path(name):
    return os.path.join(RECORDED, name + ".alerts.yml")


# ------------------------------------------------------------------ series files


def read_series(path):
    """(header comment lines, meta dict, [(series, values)])."""
    header, meta, series = [], None, []
    lines = open(path).read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#"):
            header.append(line)
            if line.startswith("# meta: "):
                meta = yaml.safe_load(line[len("# meta: "):])
        m = re.match(r"^  - series: '(.*)'$", line)
        if m:
            v = re.match(r"^    values: '(.*)'$", lines[i + 1])
            if not v:
                fail("%s:%d: a series without its values line" % (path, i + 2))
            series.append((m.group(1), v.group(1)))
    if meta is None:
        fail("%s: no '# meta:' line (not written by incident_replay --record-metrics?)" % path)
    if not series:
        fail("%s: no input_series" % path)
    return header, meta, series


def alert_metric_names(rules_path):
    """Metric names the alerts read, following recording rules to their inputs."""
    groups = yaml.safe_load(open(rules_path))["groups"]
    records = {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}
    todo = [r["expr"] for g in groups for r in g["rules"] if "alert" in r]
    names, seen = set(), set()
    while todo:
        expr = todo.pop()
        # Label values and label names are not metric names: drop quoted strings first.
        expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
            if token in records and token not in seen:
                seen.add(token)
                todo.append(records[token])
            names.add(token)
    return names


def cmd_filter(raw, name):
    header, meta, series = read_series(raw)
    used = alert_metric_names(RULES)
    kept = [(s, v) for s, v in series if s.split("{", 1)[0] in used]
    kept_names = sorted({s.split("{", 1)[0] for s, _ in kept})
    out = [l for l in header]
    out.append("# Kept by ops/recorded.py filter: the series the alerts of rules.yml read,")
    out.append("# directly or through recording rules (%d of %d series): %s" % (
        len(kept), len(series), ", ".join(kept_names)))
    out.append("interval: 1m")
    out.append("input_series:")
    for s, v in kept:
        out.append("  - series: '%s'" % s)
        out.append("    values: '%s'" % v)
    open(series_path(name), "w").write("\n".join(out) + "\n")
    print("%s: %d series (%s)" % (series_path(name), len(kept), ", ".join(kept_names)))


# ------------------------------------------------------------------ promtool


def test_file(name, body_lines, rules_rel):
    """A promtool test file: NAME.series.yml as its one test group, plus body_lines."""
    _, _, series = read_series(series_path(name))
    lines = ["# Generated by ops/recorded.py from recorded/%s.series.yml; do not edit." % name,
             "rule_files:", "  - %s" % rules_rel, "evaluation_interval: 1m",
             # Recording rules first, then the alerts that read them, at each evaluation
             # (promtool's default order is random, so a one-minute lag would come and go).
             "group_eval_order:", "  - mssql_resilience.rules", "  - mssql_resilience.alerts",
             "tests:",
             "  - name: %s" % name, "    interval: 1m", "    input_series:"]
    for s, v in series:
        lines.append("      - series: '%s'" % s)
        lines.append("        values: '%s'" % v)
    return "\n".join(lines + body_lines) + "\n"


def promtool(test_text):
    """Runs `promtool test rules` on test_text (rules.yml is linked next to it)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(RULES, os.path.join(tmp, "rules.yml"))
        path = os.path.join(tmp, "test.yml")
        open(path, "w").write(test_text)
        p = subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=tmp,
                           capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr


def parse_labels(text):
    return dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', text))


def cmd_pin(name):
    _, meta, _ = read_series(series_path(name))
    minutes = meta["samples"]
    body = ["    promql_expr_test:"]
    for m in range(minutes):
        body += ["      - expr: '%s'" % FIRING, "        eval_time: %dm" % m,
                 "        exp_samples: []"]
    rc, out = promtool(test_file(name, body, "rules.yml"))
    firing = {}  # (alertname, labels tuple) -> set of minutes
    for t, got in re.findall(r'time: ([0-9dhms]+),\n\s+exp: .*\n\s+got: (.*)', out):
        m = minutes_of(t)
        for labels in re.findall(r"\{([^{}]*)\} ", got + " "):
            d = parse_labels(labels)
            if d.get("__name__") != "ALERTS":
                fail("pin: unexpected promtool output: %s" % got[:200])
            key = (d.pop("alertname"), tuple(sorted(
                (k, v) for k, v in d.items()
                if k not in ("__name__", "alertstate"))))
            firing.setdefault(key, set()).add(m)
    if rc == 0 and firing:
        fail("pin: promtool passed although alerts fired")
    if rc != 0 and not firing:
        fail("pin: promtool failed without firing alerts:\n" + out[-2000:])
    out = ["# Generated by ops/record.sh (ops/recorded.py pin): the alerts of rules.yml that",
           "# fire over %s.series.yml, with the minutes in which each was firing," % name,
           "# as inclusive [from, to] stretches (1 minute = 1 replay second). Checked by",
           "# `recorded.py verify` against expectations.yml; ops/check.sh asserts it with",
           "# promtool minute by minute. %s (always firing) is left out." % WATCHDOG,
           "minutes: %d" % minutes, "alerts:"]
    if not firing:
        out[-1] = "alerts: []"
    for (alert, labels), ms in sorted(firing.items()):
        out.append("  - alert: %s" % alert)
        out.append("    labels: {%s}" % ", ".join("%s: %s" % (k, v) for k, v in labels))
        out.append("    firing: %s" % stretches(sorted(ms)))
    open(alerts_path(name), "w").write("\n".join(out) + "\n")
    print("%s: %d alert series fired" % (alerts_path(name), len(firing)))


def minutes_of(text):
    """Whole minutes of a Prometheus duration as promtool prints it ("1h10m", "7m", "1h")."""
    units = {"d": 1440, "h": 60, "m": 1}
    parts = re.findall(r"(\d+)([dhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        fail("pin: cannot read the time %r in promtool's output" % text)
    if any(u == "s" and n != "0" for n, u in parts):
        fail("pin: %r is not a whole minute" % text)
    return sum(int(n) * units.get(u, 0) for n, u in parts)


def stretches(ms):
    out = []
    for m in ms:
        if out and out[-1][1] == m - 1:
            out[-1][1] = m
        else:
            out.append([m, m])
    return out


def read_pin(name):
    pin = yaml.safe_load(open(alerts_path(name)))
    for a in pin["alerts"]:
        a["labels"] = {k: str(v) for k, v in (a.get("labels") or {}).items()}
    return pin


def cmd_build(name, out_path):
    rules_rel = os.path.relpath(RULES, os.path.dirname(os.path.abspath(out_path)))
    open(out_path, "w").write(build_text(name, rules_rel))


def build_text(name, rules_rel):
    """promtool assertions that the firing set is exactly the pin's, at every minute."""
    pin = read_pin(name)
    minutes = pin["minutes"]
    at = [set() for _ in range(minutes)]
    for i, a in enumerate(pin["alerts"]):
        for lo, hi in a["firing"]:
            for m in range(lo, hi + 1):
                at[m].add(i)

    def samples(members, value, name_label):
        if not members:
            return ["        exp_samples: []"]
        lines = ["        exp_samples:"]
        for i in sorted(members, key=lambda i: (pin["alerts"][i]["alert"],
                                                sorted(pin["alerts"][i]["labels"].items()))):
            a = pin["alerts"][i]
            labels = dict(a["labels"], alertname=a["alert"], alertstate="firing")
            if name_label:
                labels["__name__"] = "ALERTS"
            text = ", ".join('%s="%s"' % (k, v) for k, v in sorted(labels.items()))
            lines += ["          - labels: '{%s}'" % text, "            value: %d" % value]
        return lines

    body = ["    promql_expr_test:"]
    m = 0
    while m < minutes:
        end = m
        while end + 1 < minutes and at[end + 1] == at[m]:
            end += 1
        # The set at the stretch's first minute, exactly...
        body += ["      # minutes %d-%d: %s" % (m, end, ", ".join(sorted(
            pin["alerts"][i]["alert"] for i in at[m])) or "nothing fires"),
            "      - expr: '%s'" % FIRING, "        eval_time: %dm" % m]
        body += samples(at[m], 1, True)
        # ...and through its last minute: every member fired at every minute of it, and
        # nothing else fired at any of them. The range reaches back half a minute less
        # than the stretch, so that only the stretch's own minutes count.
        if end > m:
            body += ["      - expr: 'count_over_time(%s[%dm30s])'" % (FIRING, end - m),
                     "        eval_time: %dm" % end]
            body += samples(at[m], end - m + 1, False)
        m = end + 1
    # The watchdog fires at every evaluation.
    body += ["      # %s fires at every minute" % WATCHDOG,
             "      - expr: 'count_over_time(ALERTS{alertstate=\"firing\", alertname=\"%s\"}[%dm30s])'"
             % (WATCHDOG, minutes - 1),
             "        eval_time: %dm" % (minutes - 1),
             "        exp_samples:",
             "          - labels: '{alertname=\"%s\", alertstate=\"firing\", severity=\"none\"}'"
             % WATCHDOG,
             "            value: %d" % minutes]
    return test_file(name, body, rules_rel)


# ------------------------------------------------------------------ expectations


def matches(alert, want):
    return alert["alert"] == want["alert"] and all(
        alert["labels"].get(k) == str(v) for k, v in (want.get("labels") or {}).items())


def cmd_verify(name, quiet=False):
    exp = yaml.safe_load(open(EXPECTATIONS))["recordings"][name]
    _, meta, _ = read_series(series_path(name))
    pin = read_pin(name)
    windows = meta["outage_windows_min"]
    problems = []
    if pin["minutes"] != meta["samples"]:
        problems.append("the pin covers %d minutes, the recording %d: re-pin (ops/record.sh --pin-only)"
                        % (pin["minutes"], meta["samples"]))
    allowed = set(exp.get("may_fire", [])) | {w["alert"] for w in exp.get("must_fire", [])}
    for a in pin["alerts"]:
        if a["alert"] not in allowed:
            problems.append("%s %s fired at %s but is not expected to fire at all"
                            % (a["alert"], a["labels"], a["firing"]))
    # The fail-back: the first minute RegionSwitched fired for a switch back to the primary.
    failbacks = [s[0] for a in pin["alerts"] if a["alert"] == "MssqlResilienceRegionSwitched"
                 and a["labels"].get("to") == meta["primary"] for s in a["firing"]]
    failback = min(failbacks) if failbacks else None

    def ref(bound):
        if bound["ref"] == "outage_start":
            return windows[bound.get("window", 0)][0]
        if bound["ref"] == "recovery":
            return windows[-1][1]
        if bound["ref"] == "failback":
            if failback is None:
                problems.append("no fail-back: RegionSwitched to %s never fired" % meta["primary"])
                return pin["minutes"]
            return failback
        fail("expectations.yml: unknown ref %r (outage_start, recovery or failback)" % bound["ref"])

    for want in exp.get("must_fire", []):
        got = [a for a in pin["alerts"] if matches(a, want)]
        desc = "%s %s" % (want["alert"], want.get("labels") or "")
        if not got:
            problems.append("%s never fired" % desc)
            continue
        first = min(s[0] for a in got for s in a["firing"])
        last = max(s[1] for a in got for s in a["firing"])
        if "first" in want:
            lo = ref(want["first"])
            if not lo <= first <= lo + want["first"]["within"]:
                problems.append("%s first fired at minute %d; expected within %s min of the %s "
                                "at minute %s" % (desc, first, want["first"]["within"],
                                                  want["first"]["ref"], lo))
        if "last" in want:
            lo = ref(want["last"])
            if last > lo + want["last"]["within"]:
                problems.append("%s last fired at minute %d; expected resolved within %s min of "
                                "the %s at minute %s" % (desc, last, want["last"]["within"],
                                                         want["last"]["ref"], lo))
    for q in exp.get("quiet", []):
        lo, hi = q["from"], q.get("to", pin["minutes"] - 1)
        if isinstance(lo, dict):
            lo = ref(lo) + lo.get("plus", 0)
        if lo > hi - 4:
            problems.append("the quiet stretch %s-%s (%s) is shorter than 5 minutes: record a "
                            "longer tail" % (lo, hi, q["why"]))
        for a in pin["alerts"]:
            if q.get("severity") and a["labels"].get("severity") != q["severity"]:
                continue
            for s in a["firing"]:
                if s[0] <= hi and s[1] >= lo:
                    problems.append("%s %s fired at %s inside the quiet stretch %d-%d (%s)"
                                    % (a["alert"], a["labels"], s, lo, hi, q["why"]))
    if problems:
        print("  FAILED: %s:" % name)
        for p in problems:
            print("    " + p)
        return False
    if not quiet:
        print("  SUCCESS: %s: %d alert series fired as expected" % (name, len(pin["alerts"])))
    return True


# The README tables that say when each alert fired in this recording.
TABLE_RECORDING = "incident-2023-09-15"
READMES = [os.path.join(os.path.dirname(OPS), "README.md"), os.path.join(OPS, "README.md")]


def fired_cells(name):
    """alertname -> the table cell saying when it fired in recording NAME (minutes)."""
    pin = read_pin(name)
    groups = yaml.safe_load(open(RULES))["groups"]
    cells = {r["alert"]: [] for g in groups for r in g["rules"] if "alert" in r}
    for a in pin["alerts"]:
        labels = ",".join("%s=%s" % (k, v) for k, v in sorted(a["labels"].items())
                          if k not in ("job", "instance", "severity"))
        spans = ", ".join("%d" % lo if lo == hi else "%d-%d" % (lo, hi) for lo, hi in a["firing"])
        cells.setdefault(a["alert"], []).append("%s %s" % (labels, spans) if labels else spans)
    cells[WATCHDOG] = ["0-%d" % (pin["minutes"] - 1)]
    return {k: "; ".join(v) if v else "did not fire" for k, v in cells.items()}


def cmd_table():
    for alert, cell in sorted(fired_cells(TABLE_RECORDING).items()):
        print("| %s | %s |" % (alert, cell))


def cmd_tables():
    """Rewrites the last cell of each alert's row in the READMEs from the pin."""
    cells = fired_cells(TABLE_RECORDING)
    for path in READMES:
        out = []
        for line in open(path):
            m = re.match(r"^\| `?(MssqlResilience\w+)`? \|", line)
            if m and m.group(1) in cells:
                head = line.rstrip("\n").rstrip().rstrip("|").rstrip()
                head = head[:head.rindex("|")]
                line = "%s| %s |\n" % (head, cells[m.group(1)])
            out.append(line)
        open(path, "w").write("".join(out))
    print("README tables rewritten from %s.alerts.yml" % TABLE_RECORDING)


def check_readmes():
    """Each README row of an alert states when it fired in TABLE_RECORDING, as pinned."""
    cells = fired_cells(TABLE_RECORDING)
    ok = True
    for path in READMES:
        rows = {}
        for line in open(path):
            m = re.match(r"^\| `?(MssqlResilience\w+)`? \|", line)
            if m:
                rows[m.group(1)] = line
        for alert, cell in sorted(cells.items()):
            if alert not in rows:
                print("  FAILED: %s: no table row for %s" % (path, alert))
                ok = False
            elif "| %s |" % cell not in rows[alert]:
                print("  FAILED: %s: the row of %s must say when it fired in %s: | %s |"
                      % (path, alert, TABLE_RECORDING, cell))
                ok = False
    if ok:
        print("  SUCCESS: the README alert tables match %s.alerts.yml" % TABLE_RECORDING)
    return ok


def cmd_check():
    names = sorted(yaml.safe_load(open(EXPECTATIONS))["recordings"])
    ok = check_readmes()
    for name in names:
        rc, out = promtool(build_text(name, "rules.yml"))
        if rc != 0:
            ok = False
            print("  FAILED: %s: rules.yml no longer fires as pinned in %s.alerts.yml:" % (name, name))
            print("\n".join("    " + l[:400] for l in out.strip().splitlines() if l.strip())[:6000])
            print("    If the change is intended, re-pin (ops/record.sh --pin-only) and review the diff.")
        else:
            print("  SUCCESS: %s: promtool confirms the pinned alert timeline" % name)
        ok = cmd_verify(name) and ok
    if not ok:
        sys.exit(1)


def main(argv):
    cmds = {"filter": (cmd_filter, 2), "pin": (cmd_pin, 1), "build": (cmd_build, 2),
            "verify": (cmd_verify, 1), "check": (cmd_check, 0), "table": (cmd_table, 0),
            "tables": (cmd_tables, 0)}
    if len(argv) < 1 or argv[0] not in cmds or len(argv) - 1 != cmds[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    fn, _ = cmds[argv[0]]
    r = fn(*argv[1:])
    if r is False:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
