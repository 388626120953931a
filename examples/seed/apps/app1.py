"""app1: the seed tutorial's first WSGI application (standard library only).

It answers every request with a short greeting and logs each request to
stderr, which vigild captures, so `vigilctl tail app1 stderr` shows traffic.
"""
import os
import sys
from wsgiref.simple_server import make_server

from greeting import greet


def application(environ, start_response):
    body = greet("app1", environ.get("PATH_INFO", "/")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    port = int(os.environ.get("APP1_PORT", "18081"))
    server = make_server("127.0.0.1", port, application)
    print(f"app1 listening on 127.0.0.1:{port}", flush=True)
    sys.stdout.flush()
    server.serve_forever()
