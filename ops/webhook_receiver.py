#!/usr/bin/env python3
"""A local Alertmanager webhook receiver for ops/e2e.sh.

    webhook_receiver.py OUT.jsonl

Listens on 127.0.0.1 (a free port), prints `listening on http://127.0.0.1:PORT` once it is
bound, and appends one JSON line to OUT.jsonl per alert in every notification it receives:
{"received": <unix time>, "status": "firing"|"resolved", "labels": {...}}.
Answers 200 to every POST (Alertmanager retries otherwise), 400 to a body that is not an
Alertmanager webhook payload. Runs until killed.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    out = None

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length))
            alerts = body["alerts"]
        except (ValueError, KeyError, TypeError) as e:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(("not a webhook payload: %s" % e).encode()[:200])
            return
        now = time.time()
        with open(self.out, "a") as f:
            for a in alerts:
                f.write(json.dumps({"received": now, "status": a.get("status"),
                                    "labels": a.get("labels", {})}, sort_keys=True) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    Handler.out = sys.argv[1]
    open(Handler.out, "a").close()
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
