"""A tiny stand-in service for the Vigil "beyond supervisord" example.

Standard library only. Options run in order:
  --name NAME        name used in printed lines
  --sleep SECS       sleep
  --port PORT        serve HTTP in the background (GET /health -> 200)
  --say TEXT         print TEXT (flushed), e.g. the line a ready_log waits for
  --notify           send READY=1 to $NOTIFY_SOCKET (systemd's protocol)
  --check-port PORT  exit 0 if 127.0.0.1:PORT accepts a connection, else 1
  --crash-after SECS die with exit code 3 after SECS (to watch restarts)
  --exit CODE        exit now with CODE
At the end it runs until stopped.
"""

import http.server
import os
import socket
import sys
import threading
import time


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path.startswith("/health") else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def notify():
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        print("NOTIFY_SOCKET is unset", flush=True)
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", target)


def main(args):
    name = "svc"
    i = 0
    while i < len(args):
        flag = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        i += 2
        if flag == "--name":
            name = value
        elif flag == "--sleep":
            time.sleep(float(value))
        elif flag == "--port":
            serve(int(value))
            print(f"{name} serving on {value}", flush=True)
        elif flag == "--say":
            print(value, flush=True)
        elif flag == "--notify":
            i -= 1
            notify()
            print(f"{name} notified", flush=True)
        elif flag == "--check-port":
            try:
                socket.create_connection(("127.0.0.1", int(value)), timeout=1).close()
                return 0
            except OSError:
                return 1
        elif flag == "--crash-after":
            threading.Timer(float(value), lambda: os._exit(3)).start()
        elif flag == "--exit":
            print(f"{name} exiting with {value}", flush=True)
            return int(value)
        else:
            print(f"unknown option {flag}", file=sys.stderr)
            return 2
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
