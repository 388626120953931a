"""app2: the seed tutorial's second WSGI application (standard library only).

It reports how many requests it has served, so restarting it visibly resets
its state while app1 keeps running.
"""
import os
from wsgiref.simple_server import make_server

from greeting import greet

served = 0


def application(environ, start_response):
    global served
    served += 1
    body = (greet("app2", environ.get("PATH_INFO", "/")).rstrip("\n") + f" (request {served})\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    port = int(os.environ.get("APP2_PORT", "18082"))
    server = make_server("127.0.0.1", port, application)
    print(f"app2 listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()
