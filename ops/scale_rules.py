#!/usr/bin/env python3
"""Writes a time-compressed copy of a Prometheus rules file, for ops/e2e.sh.

    scale_rules.py RULES.yml FACTOR OUT.yml

Every duration in a `for:`, a range selector `[...]` or an `offset` is divided by FACTOR
(for example with 20: `for: 5m` -> `for: 15s`, `[10m]` -> `[30s]`), so that an end-to-end
run sees each alert fire and resolve within a minute or two. Nothing else changes: the
expressions, labels and annotations stay those of RULES.yml. Errors name the duration.
"""

import re
import sys

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = r"((?:\d+(?:ms|s|m|h|d))+)"


def seconds(text):
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    return sum(int(n) * UNITS[u] for n, u in parts)


def scaled(text, factor):
    s = seconds(text) / factor
    ms = round(s * 1000)
    if ms <= 0:
        sys.exit("scale_rules.py: %r / %s is below a millisecond" % (text, factor))
    return "%dms" % ms if ms % 1000 else "%ds" % (ms // 1000)


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    rules, factor, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    if factor <= 0:
        sys.exit("scale_rules.py: FACTOR must be > 0, not %s" % sys.argv[2])
    text = open(rules).read()
    text = re.sub(r"(\bfor:\s*)" + DURATION, lambda m: m.group(1) + scaled(m.group(2), factor), text)
    text = re.sub(r"\[" + DURATION + r"\]", lambda m: "[%s]" % scaled(m.group(1), factor), text)
    text = re.sub(r"(\boffset\s+)" + DURATION, lambda m: m.group(1) + scaled(m.group(2), factor), text)
    open(out, "w").write("# Time-compressed by ops/scale_rules.py (durations / %s) from %s\n%s"
                         % (sys.argv[2], rules, text))


if __name__ == "__main__":
    main()
