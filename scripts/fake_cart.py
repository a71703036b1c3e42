#!/usr/bin/env python3
"""A stand-in cart service for the API fuzzing run (scripts/schemathesis.sh):
every cart id holds one line of sku-1, so that each schema-valid `cartId`
checkout can succeed. Usage: fake_cart.py PORT"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CART = {"currency": "USD", "items": [{"productId": "sku-1", "quantity": 1, "unitPrice": 100}]}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        if not self.path.startswith("/api/carts/"):
            self.send_error(404)
            return
        body = json.dumps(CART).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
