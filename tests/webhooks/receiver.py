#!/usr/bin/env python3
"""A webhook receiver for the end-to-end tests, verifying with the real Standard Webhooks
library (`standardwebhooks`, the reference implementation nobody here wrote).

It listens on 127.0.0.1 (port 0 unless --port), prints one JSON line {"ready": true, "port": N}
on stdout, and then for every POST:

- verifies it with standardwebhooks.Webhook(secret).verify(body, headers); a request that does
  not verify gets 400 and is logged as unverified;
- answers 500 to the first --fail-first verified requests, and always to events of the accounts
  named by --fail-account (an endpoint that keeps failing for them);
- sleeps --delay-ms before answering (a slow endpoint);
- answers 204 otherwise, after appending the event as one JSON line to --events
  ({"webhook_id", "webhook_timestamp", "payload"}).

Every request, whatever its answer, is appended to --requests as one JSON line
({"webhook_id", "verified", "status"}). The secret is read from --secret-file (`whsec_...`).
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

LOCK = threading.Lock()


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-account", action="append", default=[])
    p.add_argument("--delay-ms", type=int, default=0)
    return p.parse_args()


def append(path, record):
    with LOCK:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def main():
    args = parse_args()
    with open(args.secret_file, encoding="utf-8") as f:
        webhook = Webhook(f.read().strip())
    state = {"fail_left": args.fail_first}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *fargs):
            sys.stderr.write("receiver: " + (fmt % fargs) + "\n")

        def answer(self, status):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items()}
            webhook_id = self.headers.get("webhook-id")
            try:
                payload = webhook.verify(body, headers)
            except Exception as e:  # noqa: BLE001 - any failure means "not verified"
                sys.stderr.write(f"receiver: {webhook_id} did not verify: {e}\n")
                append(args.requests, {"webhook_id": webhook_id, "verified": False, "status": 400})
                self.answer(400)
                return
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            with LOCK:
                fail = state["fail_left"] > 0
                if fail:
                    state["fail_left"] -= 1
            account = (payload.get("data") or {}).get("account")
            if fail or account in args.fail_account:
                append(args.requests, {"webhook_id": webhook_id, "verified": True, "status": 500})
                self.answer(500)
                return
            append(
                args.events,
                {
                    "webhook_id": webhook_id,
                    "webhook_timestamp": self.headers.get("webhook-timestamp"),
                    "payload": payload,
                },
            )
            append(args.requests, {"webhook_id": webhook_id, "verified": True, "status": 204})
            self.answer(204)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(json.dumps({"ready": True, "port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
