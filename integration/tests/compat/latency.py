"""A benchmark, not a test: the latency of supervisor.getAllProcessInfo with 500 running
processes over the UNIX socket, one fresh connection per call, median of 20 calls.

    python3 latency.py <daemon command...> -- <helper child path>

e.g. `python3 latency.py target/release/vigild -- target/debug/vigil-test-child`, or with
`<venv>/bin/supervisord` as the daemon command for the reference figure. The daemon runs
in the foreground in a temporary directory and is shut down at the end.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

PROCESSES = 500
CALLS = 20

split = sys.argv.index("--")
daemon_command, child = sys.argv[1:split], sys.argv[split + 1]
here = tempfile.mkdtemp(prefix="latency-")
sock = os.path.join(here, "supervisor.sock")
with open(os.path.join(here, "supervisord.conf"), "w") as config:
    config.write(f"""
[unix_http_server]
file={sock}

[supervisord]
logfile={here}/supervisord.log
pidfile={here}/supervisord.pid
childlogdir={here}
minfds=4096

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:p]
command={child} --sleep 100000
numprocs={PROCESSES}
process_name=%(program_name)s_%(process_num)03d
startsecs=0
stdout_logfile=NONE
stderr_logfile=NONE
""")

BODY = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo").encode()
REQUEST = (b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def call():
    """One call on a fresh connection: the seconds until the whole response arrived, and
    the decoded result."""
    started = time.perf_counter()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock)
    conn.sendall(REQUEST)
    data = b""
    length = None
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        data += chunk
        if length is None and b"\r\n\r\n" in data:
            head, _, _ = data.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = len(head) + 4 + int(line.split(b":")[1])
        if length is not None and len(data) >= length:
            break
    elapsed = time.perf_counter() - started
    conn.close()
    body = data.partition(b"\r\n\r\n")[2]
    return elapsed, xmlrpc.client.loads(body)[0][0]


daemon = subprocess.Popen(daemon_command + ["-n", "-c", os.path.join(here, "supervisord.conf")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=here)
try:
    deadline = time.monotonic() + 300
    while True:
        try:
            _, infos = call()
            if len(infos) == PROCESSES and all(i["statename"] == "RUNNING" for i in infos):
                break
        except (OSError, xmlrpc.client.Error, IndexError):
            pass
        if time.monotonic() > deadline:
            sys.exit("the processes did not all reach RUNNING")
        time.sleep(0.2)
    times = [call()[0] for _ in range(CALLS)]
    print(f"{' '.join(daemon_command)}: getAllProcessInfo, {PROCESSES} processes, "
          f"median of {CALLS}: {statistics.median(times) * 1000:.2f} ms "
          f"(min {min(times) * 1000:.2f}, max {max(times) * 1000:.2f})")
finally:
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(sock)
        body = xmlrpc.client.dumps((), "supervisor.shutdown").encode()
        conn.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        conn.recv(65536)
        conn.close()
        daemon.wait(timeout=120)
    except Exception:
        daemon.kill()
        daemon.wait()
    shutil.rmtree(here, ignore_errors=True)
