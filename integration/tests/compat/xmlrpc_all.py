"""Every supervisor.* and system.* XML-RPC method, and their fault paths, with Python's
xmlrpc.client over supervisorctl's own UNIX-socket transport (supervisor.xmlrpc).

Run by integration/tests/compat/xmlrpc.rs against the real supervisord (to prove the
expectations) and against vigild (to prove compatibility), with the config written there:

    python3 xmlrpc_all.py <socket> <daemon dir> <daemon pid> <helper child path>

Prints every failed expectation and exits 1 if there was any, 0 otherwise.
"""

import http.client
import sys
import time
import xmlrpc.client

from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

SOCKET, HERE, DAEMON_PID, CHILD = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
CONFIG = HERE + "/supervisord.conf"
failures = []

# The methods of supervisord 4.3.0 (aliases included), as system.listMethods lists them.
METHODS = sorted(
    ["supervisor." + name for name in (
        "addProcessGroup clearAllProcessLogs clearLog clearProcessLog clearProcessLogs "
        "getAPIVersion getAllConfigInfo getAllProcessInfo getIdentification getPID "
        "getProcessInfo getState getSupervisorVersion getVersion readLog readMainLog "
        "readProcessLog readProcessStderrLog readProcessStdoutLog reloadConfig "
        "removeProcessGroup restart sendProcessStdin sendRemoteCommEvent shutdown "
        "signalAllProcesses signalProcess signalProcessGroup startAllProcesses "
        "startProcess startProcessGroup stopAllProcesses stopProcess stopProcessGroup "
        "tailProcessLog tailProcessStderrLog tailProcessStdoutLog"
    ).split()]
    + ["system.listMethods", "system.methodHelp", "system.methodSignature", "system.multicall"]
)

INFO_FIELDS = {
    "name", "group", "start", "stop", "now", "state", "statename", "spawnerr", "exitstatus",
    "logfile", "stdout_logfile", "stderr_logfile", "pid", "description",
}

# getAllConfigInfo fields of supervisor 4.3.0.
CONFIG_FIELDS = {
    "autostart", "directory", "uid", "command", "exitcodes", "group", "group_prio", "inuse",
    "killasgroup", "name", "process_prio", "redirect_stderr", "startretries", "startsecs",
    "stdout_capture_maxbytes", "stdout_events_enabled", "stdout_logfile",
    "stdout_logfile_backups", "stdout_logfile_maxbytes", "stdout_syslog",
    "stderr_capture_maxbytes", "stderr_events_enabled", "stderr_logfile",
    "stderr_logfile_backups", "stderr_logfile_maxbytes", "stderr_syslog",
    "stopsignal", "stopwaitsecs", "serverurl",
}


def server():
    transport = SupervisorTransport(None, None, "unix://" + SOCKET)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


S = server()


def check(what, got, expected):
    if got != expected:
        failures.append("%s: expected %r, got %r" % (what, expected, got))


def truth(what, condition, detail=""):
    if not condition:
        failures.append("%s: %s" % (what, detail))


def fault(what, call, code, string=None):
    try:
        result = call()
    except xmlrpc.client.Fault as error:
        check(what + " faultCode", error.faultCode, code)
        if string is not None:
            check(what + " faultString", error.faultString, string)
        return
    failures.append("%s: expected fault %d, got %r" % (what, code, result))


def wait_for(what, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (xmlrpc.client.Fault, OSError, http.client.HTTPException):
            # Restarting: the persistent connection broke, or the daemon said SHUTDOWN_STATE.
            pass
        time.sleep(0.05)
    failures.append("timed out waiting for " + what)
    return False


def state(name, proxy=None):
    return (proxy or S).supervisor.getProcessInfo(name)["statename"]


def http_request(method, path, body=None):
    """One raw HTTP request over the socket: (status, body bytes)."""
    connection = UnixStreamHTTPConnection("localhost")
    connection.socketfile = SOCKET
    headers = {"Content-Type": "text/xml"} if body is not None else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    status = response.status
    data = response.read() if status != 200 or method != "GET" else response.read1(65536)
    connection.close()
    return status, data


wait_for("autostart processes to run",
         lambda: all(state(n) == "RUNNING" for n in ("sleeper", "cat", "grp:web_0", "grp:web_1")))
wait_for("sleeper's output", lambda: S.supervisor.readProcessStdoutLog("sleeper", 0, 0) == "hello\n")

# --- Daemon information -------------------------------------------------------------
check("getAPIVersion", S.supervisor.getAPIVersion(), "3.0")
check("getVersion", S.supervisor.getVersion(), "3.0")
truth("getSupervisorVersion", isinstance(S.supervisor.getSupervisorVersion(), str))
check("getIdentification", S.supervisor.getIdentification(), "compat")
check("getState", S.supervisor.getState(), {"statecode": 1, "statename": "RUNNING"})
check("getPID", S.supervisor.getPID(), DAEMON_PID)

# --- system.* -----------------------------------------------------------------------
# vigild lists its own vigil.* methods (vigil.upgrade) on top of supervisord's.
check("listMethods", [m for m in S.system.listMethods() if not m.startswith("vigil.")], METHODS)
for name in METHODS:
    truth("methodHelp " + name, isinstance(S.system.methodHelp(name), str))
    signature = S.system.methodSignature(name)
    truth("methodSignature " + name, isinstance(signature, list) and len(signature) >= 1)
check("methodSignature startProcess", S.system.methodSignature("supervisor.startProcess"),
      ["boolean", "string", "boolean"])
check("methodSignature getAllProcessInfo",
      S.system.methodSignature("supervisor.getAllProcessInfo"), ["array"])
check("methodSignature readProcessStdoutLog",
      S.system.methodSignature("supervisor.readProcessStdoutLog"),
      ["string", "string", "int", "int"])
fault("methodHelp unknown", lambda: S.system.methodHelp("supervisor.nosuch"), 4)
fault("methodSignature unknown", lambda: S.system.methodSignature("nosuch"), 4)
check("multicall", S.system.multicall([
    {"methodName": "supervisor.getAPIVersion", "params": []},
    {"methodName": "supervisor.nosuch", "params": []},
    {"methodName": "supervisor.getProcessInfo", "params": ["nosuch"]},
    {"methodName": "system.multicall", "params": [[]]},
    {"methodName": "supervisor.getState"},
]), [
    "3.0",
    {"faultCode": 1, "faultString": "UNKNOWN_METHOD"},
    {"faultCode": 10, "faultString": "BAD_NAME: nosuch"},
    {"faultCode": 2, "faultString": "INCORRECT_PARAMETERS: Recursive system.multicall forbidden"},
    {"statecode": 1, "statename": "RUNNING"},
])

# --- Dispatch faults ----------------------------------------------------------------
fault("unknown method", lambda: S.supervisor.nosuch(), 1, "UNKNOWN_METHOD")
fault("unknown namespace", lambda: S.nosuch.getState(), 1, "UNKNOWN_METHOD")
fault("private method", lambda: S.supervisor._update("x"), 1, "UNKNOWN_METHOD")
fault("dotted traversal", lambda: S.supervisor.options.getState(), 1, "UNKNOWN_METHOD")
fault("too many arguments", lambda: S.supervisor.getState(1), 2, "INCORRECT_PARAMETERS")
fault("too few arguments", lambda: S.supervisor.getProcessInfo(), 2, "INCORRECT_PARAMETERS")

# --- Process information ------------------------------------------------------------
info = S.supervisor.getProcessInfo("sleeper")
check("getProcessInfo fields", set(info), INFO_FIELDS)
check("getProcessInfo name/group", (info["name"], info["group"]), ("sleeper", "sleeper"))
check("getProcessInfo state", (info["state"], info["statename"]), (20, "RUNNING"))
truth("getProcessInfo pid", info["pid"] > 0, repr(info))
truth("getProcessInfo description", info["description"].startswith("pid %d, uptime " % info["pid"]),
      repr(info))
check("getProcessInfo logfiles", (info["logfile"], info["stdout_logfile"], info["stderr_logfile"]),
      (HERE + "/sleeper.out", HERE + "/sleeper.out", HERE + "/sleeper.err"))
truth("getProcessInfo times", 0 < info["start"] <= info["now"] and info["stop"] == 0, repr(info))
check("getProcessInfo spawnerr/exitstatus", (info["spawnerr"], info["exitstatus"]), ("", 0))
manual = S.supervisor.getProcessInfo("manual")
check("never started", (manual["statename"], manual["start"], manual["pid"], manual["description"]),
      ("STOPPED", 0, 0, "Not started"))
check("no log file", S.supervisor.getProcessInfo("nolog")["stdout_logfile"], "")
check("group:name", S.supervisor.getProcessInfo("grp:web_1")["name"], "web_1")
fault("getProcessInfo unknown", lambda: S.supervisor.getProcessInfo("nosuch"), 10, "BAD_NAME: nosuch")
fault("getProcessInfo group", lambda: S.supervisor.getProcessInfo("grp:*"), 10, "BAD_NAME: grp:*")
everything = S.supervisor.getAllProcessInfo()
check("getAllProcessInfo order", [(i["group"], i["name"]) for i in everything], [
    ("cat", "cat"), ("failer", "failer"), ("grp", "web_0"), ("grp", "web_1"),
    ("manual", "manual"), ("noexec", "noexec"), ("nofile", "nofile"), ("nolog", "nolog"),
    ("sleeper", "sleeper"),
])
truth("getAllProcessInfo fields", all(set(i) == INFO_FIELDS for i in everything))
configs = S.supervisor.getAllConfigInfo()
check("getAllConfigInfo names", [c["name"] for c in configs],
      sorted(c["name"] for c in configs))
missing = [sorted(CONFIG_FIELDS - set(c)) for c in configs if not CONFIG_FIELDS <= set(c)]
check("getAllConfigInfo fields missing", missing, [])
sleeper_config = [c for c in configs if c["name"] == "sleeper"][0]
check("getAllConfigInfo sleeper", {k: sleeper_config[k] for k in (
    "group", "inuse", "autostart", "startsecs", "startretries", "stopsignal", "stopwaitsecs",
    "exitcodes", "redirect_stderr", "killasgroup", "stdout_logfile", "stderr_logfile",
    "group_prio", "process_prio")}, {
    "group": "sleeper", "inuse": True, "autostart": True, "startsecs": 0, "startretries": 3,
    "stopsignal": 15, "stopwaitsecs": 5, "exitcodes": [0], "redirect_stderr": False,
    "killasgroup": False, "stdout_logfile": HERE + "/sleeper.out",
    "stderr_logfile": HERE + "/sleeper.err", "group_prio": 999, "process_prio": 999,
})

# --- Start and stop -----------------------------------------------------------------
check("startProcess", S.supervisor.startProcess("manual"), True)
check("started", state("manual"), "RUNNING")
fault("startProcess running", lambda: S.supervisor.startProcess("manual"), 60, "ALREADY_STARTED: manual")
check("stopProcess", S.supervisor.stopProcess("manual"), True)
check("stopped", state("manual"), "STOPPED")
fault("stopProcess stopped", lambda: S.supervisor.stopProcess("manual"), 70, "NOT_RUNNING: manual")
check("startProcess nowait", S.supervisor.startProcess("manual", False), True)
wait_for("manual to run", lambda: state("manual") == "RUNNING")
check("stopProcess nowait", S.supervisor.stopProcess("manual", False), True)
wait_for("manual to stop", lambda: state("manual") == "STOPPED")
fault("startProcess unknown", lambda: S.supervisor.startProcess("nosuch"), 10, "BAD_NAME: nosuch")
fault("stopProcess unknown", lambda: S.supervisor.stopProcess("nosuch"), 10, "BAD_NAME: nosuch")
fault("startProcess spawn error", lambda: S.supervisor.startProcess("failer"), 50, "SPAWN_ERROR: failer")
# supervisord answers SPAWN_ERROR before its main loop moves the process to FATAL.
wait_for("failer to be FATAL", lambda: state("failer") == "FATAL")
fault("startProcess no file", lambda: S.supervisor.startProcess("nofile"), 20)
fault("startProcess not executable", lambda: S.supervisor.startProcess("noexec"), 21)
check("startProcessGroup running", S.supervisor.startProcessGroup("grp"), [])
ok = lambda group, names: [{"name": n, "group": group, "status": 80, "description": "OK"} for n in names]
check("stopProcessGroup", sorted(S.supervisor.stopProcessGroup("grp"), key=lambda r: r["name"]),
      ok("grp", ["web_0", "web_1"]))
check("stopProcessGroup stopped", S.supervisor.stopProcessGroup("grp"), [])
check("startProcessGroup", sorted(S.supervisor.startProcessGroup("grp"), key=lambda r: r["name"]),
      ok("grp", ["web_0", "web_1"]))
check("stopProcess group", sorted(S.supervisor.stopProcess("grp:*"), key=lambda r: r["name"]),
      ok("grp", ["web_0", "web_1"]))
check("startProcess group", sorted(S.supervisor.startProcess("grp:"), key=lambda r: r["name"]),
      ok("grp", ["web_0", "web_1"]))
fault("startProcessGroup unknown", lambda: S.supervisor.startProcessGroup("nosuch"), 10, "BAD_NAME: nosuch")
fault("stopProcessGroup unknown", lambda: S.supervisor.stopProcessGroup("nosuch"), 10, "BAD_NAME: nosuch")
stopped = S.supervisor.stopAllProcesses()
check("stopAllProcesses", sorted((r["group"], r["name"], r["status"]) for r in stopped), [
    ("cat", "cat", 80), ("grp", "web_0", 80), ("grp", "web_1", 80), ("nolog", "nolog", 80),
    ("sleeper", "sleeper", 80)])
started = S.supervisor.startAllProcesses()
check("startAllProcesses", sorted((r["name"], r["status"]) for r in started), [
    ("cat", 80), ("failer", 50), ("manual", 80), ("noexec", 21), ("nofile", 20), ("nolog", 80),
    ("sleeper", 80), ("web_0", 80), ("web_1", 80)])
# FATAL and never-startable processes are "not running", so they are tried again.
# supervisord moves failer from BACKOFF to FATAL on its next loop pass, after
# startAllProcesses has answered; a BACKOFF process would be skipped.
wait_for("failer to be FATAL again", lambda: state("failer") == "FATAL")
again = {r["name"]: r["status"] for r in S.supervisor.startAllProcesses(False)}
# Without waiting, failer's start answers OK. supervisord reaps right after the
# spawn (startProcess calls reap() to see a quick death early), so when failer
# (`--exit 3`) has already exited by then, it answers SPAWN_ERROR instead: a
# race inside supervisord, won either way on a loaded machine.
failer_status = again.pop("failer", None)
truth("startAllProcesses again: failer", failer_status in (80, 50),
      "expected 80 (or supervisord's 50), got %r" % failer_status)
check("startAllProcesses again", sorted(again.items()), [("noexec", 21), ("nofile", 20)])
# That start did not wait: failer must have stopped again before the signal
# checks below expect it to be not running (on a loaded machine its exit can
# come after the next calls).
wait_for("failer to stop again", lambda: state("failer") in ("FATAL", "EXITED"))
wait_for("sleeper's output", lambda: S.supervisor.readProcessStdoutLog("sleeper", 0, 0) == "hello\nhello\n")
# stdout and stderr are separate pipes: one can be logged before the other.
wait_for("sleeper's stderr", lambda: S.supervisor.readProcessStderrLog("sleeper", 0, 0) == "oops\noops\n")

# --- Signals ------------------------------------------------------------------------
check("signalProcess name", S.supervisor.signalProcess("sleeper", "WINCH"), True)
check("signalProcess SIG name", S.supervisor.signalProcess("sleeper", "SIGWINCH"), True)
check("signalProcess number", S.supervisor.signalProcess("sleeper", "28"), True)
fault("signalProcess bad signal", lambda: S.supervisor.signalProcess("sleeper", "BOGUS"), 11, "BAD_SIGNAL: BOGUS")
fault("signalProcess unknown", lambda: S.supervisor.signalProcess("nosuch", "WINCH"), 10, "BAD_NAME: nosuch")
fault("signalProcess stopped", lambda: S.supervisor.signalProcess("failer", "WINCH"), 70, "NOT_RUNNING: failer")
check("signalProcessGroup", sorted(S.supervisor.signalProcessGroup("grp", "WINCH"), key=lambda r: r["name"]),
      ok("grp", ["web_0", "web_1"]))
check("signalProcess group", sorted(S.supervisor.signalProcess("grp:*", "WINCH"), key=lambda r: r["name"]),
      ok("grp", ["web_0", "web_1"]))
fault("signalProcessGroup unknown", lambda: S.supervisor.signalProcessGroup("nosuch", "WINCH"), 10, "BAD_NAME: nosuch")
signalled = S.supervisor.signalAllProcesses("WINCH")
check("signalAllProcesses", sorted((r["name"], r["status"]) for r in signalled), [
    ("cat", 80), ("manual", 80), ("nolog", 80), ("sleeper", 80), ("web_0", 80), ("web_1", 80)])
bad = S.supervisor.signalAllProcesses("BOGUS")
check("signalAllProcesses bad signal", sorted((r["name"], r["status"], r["description"]) for r in bad), [
    (n, 11, "BAD_SIGNAL: BOGUS") for n in ("cat", "manual", "nolog", "sleeper", "web_0", "web_1")])
check("still running after WINCH", state("sleeper"), "RUNNING")

# --- Logs ---------------------------------------------------------------------------
read = S.supervisor.readProcessStdoutLog
check("read all", read("sleeper", 0, 0), "hello\nhello\n")
check("read alias", S.supervisor.readProcessLog("sleeper", 0, 0), "hello\nhello\n")
check("read stderr", S.supervisor.readProcessStderrLog("sleeper", 0, 0), "oops\noops\n")
check("read last", read("sleeper", -3, 0), "lo\n")
check("read from", read("sleeper", 7, 0), "ello\n")
check("read slice", read("sleeper", 1, 3), "ell")
check("read past end", read("sleeper", 100, 0), "")
fault("read bad arguments", lambda: read("sleeper", -1, 1), 3, "BAD_ARGUMENTS")
fault("read negative length", lambda: read("sleeper", 0, -1), 3, "BAD_ARGUMENTS")
fault("read unknown", lambda: read("nosuch", 0, 0), 10, "BAD_NAME: nosuch")
fault("read no log file", lambda: read("nolog", 0, 0), 20)
fault("read group", lambda: read("grp:*", 0, 0), 10)
tail = S.supervisor.tailProcessStdoutLog
check("tail", tail("sleeper", 0, 3), ["lo\n", 12, True])
check("tail alias", S.supervisor.tailProcessLog("sleeper", 0, 3), ["lo\n", 12, True])
check("tail stderr", S.supervisor.tailProcessStderrLog("sleeper", 0, 100), ["oops\noops\n", 10, False])
check("tail at end", tail("sleeper", 12, 100), ["", 12, False])
check("tail no log file", tail("nolog", 0, 100), ["", 0, False])
fault("tail unknown", lambda: tail("nosuch", 0, 10), 10, "BAD_NAME: nosuch")
main_log = S.supervisor.readLog(0, 0)
truth("readLog", isinstance(main_log, str) and len(main_log) > 0)
truth("readMainLog last", len(S.supervisor.readMainLog(-10, 0)) == 10)
fault("readLog bad arguments", lambda: S.supervisor.readLog(-1, 1), 3, "BAD_ARGUMENTS")
check("clearLog", S.supervisor.clearLog(), True)
check("clearProcessLogs", S.supervisor.clearProcessLogs("sleeper"), True)
check("cleared stdout", read("sleeper", 0, 0), "")
check("cleared stderr", S.supervisor.readProcessStderrLog("sleeper", 0, 0), "")
check("clearProcessLog alias", S.supervisor.clearProcessLog("sleeper"), True)
fault("clearProcessLogs unknown", lambda: S.supervisor.clearProcessLogs("nosuch"), 10, "BAD_NAME: nosuch")
cleared = S.supervisor.clearAllProcessLogs()
check("clearAllProcessLogs", sorted((r["group"], r["name"], r["status"]) for r in cleared), [
    ("cat", "cat", 80), ("failer", "failer", 80), ("grp", "web_0", 80), ("grp", "web_1", 80),
    ("manual", "manual", 80), ("noexec", "noexec", 80), ("nofile", "nofile", 80),
    ("nolog", "nolog", 80), ("sleeper", "sleeper", 80)])

# --- HTTP handlers ------------------------------------------------------------------
S.supervisor.stopProcess("sleeper")
S.supervisor.startProcess("sleeper")
wait_for("sleeper's output", lambda: read("sleeper", 0, 0) == "hello\n")
# stderr is a pipe of its own: its line can land after stdout's.
wait_for("sleeper's stderr", lambda: S.supervisor.readProcessStderrLog("sleeper", 0, 0) == "oops\n")
status, body = http_request("GET", "/logtail/sleeper")
check("logtail", (status, body), (200, b"hello\n"))
status, body = http_request("GET", "/logtail/sleeper/stderr")
check("logtail stderr", (status, body), (200, b"oops\n"))
check("logtail unknown", http_request("GET", "/logtail/nosuch/stdout")[0], 404)
check("GET /RPC2", http_request("GET", "/RPC2")[0], 400)
check("malformed XML", http_request("POST", "/RPC2", b"<methodCall><methodName>")[0], 400)

# --- stdin and events ---------------------------------------------------------------
check("sendProcessStdin", S.supervisor.sendProcessStdin("cat", "ping\n"), True)
wait_for("cat to echo", lambda: read("cat", 0, 0) == "ping\n")
check("sendProcessStdin unicode", S.supervisor.sendProcessStdin("cat", "\u00e9t\u00e9\n"), True)
wait_for("cat to echo unicode", lambda: read("cat", 0, 0) == "ping\n\u00e9t\u00e9\n")
fault("sendProcessStdin stopped", lambda: S.supervisor.sendProcessStdin("failer", "x"), 70, "NOT_RUNNING: failer")
fault("sendProcessStdin unknown", lambda: S.supervisor.sendProcessStdin("nosuch", "x"), 10, "BAD_NAME: nosuch")
fault("sendProcessStdin not a string", lambda: S.supervisor.sendProcessStdin("cat", 5), 2)
check("sendRemoteCommEvent", S.supervisor.sendRemoteCommEvent("kind", "data"), True)

# --- Configuration: reloadConfig, addProcessGroup, removeProcessGroup -------------------
check("reloadConfig unchanged", S.supervisor.reloadConfig(), [[[], [], []]])
original = open(CONFIG).read()
with open(CONFIG, "a") as config:
    config.write("\n[program:added]\ncommand=%s --sleep 100000\nstartsecs=0\n"
                 "stdout_logfile=NONE\nstderr_logfile=NONE\n" % CHILD)
check("reloadConfig added", S.supervisor.reloadConfig(), [[["added"], [], []]])
check("avail before add", [c["inuse"] for c in S.supervisor.getAllConfigInfo() if c["name"] == "added"], [False])
fault("removeProcessGroup not active", lambda: S.supervisor.removeProcessGroup("added"), 10, "BAD_NAME: added")
check("addProcessGroup", S.supervisor.addProcessGroup("added"), True)
fault("addProcessGroup again", lambda: S.supervisor.addProcessGroup("added"), 90, "ALREADY_ADDED: added")
fault("addProcessGroup unknown", lambda: S.supervisor.addProcessGroup("nosuch"), 10, "BAD_NAME: nosuch")
wait_for("added to run", lambda: state("added") == "RUNNING")
fault("removeProcessGroup running", lambda: S.supervisor.removeProcessGroup("added"), 91, "STILL_RUNNING: added")
check("stop added", S.supervisor.stopProcess("added"), True)
check("removeProcessGroup", S.supervisor.removeProcessGroup("added"), True)
fault("removeProcessGroup unknown", lambda: S.supervisor.removeProcessGroup("nosuch"), 10, "BAD_NAME: nosuch")
with open(CONFIG, "w") as config:
    config.write(original + "\n[program:broken]\nautostart=false\n")
fault("reloadConfig bad config", lambda: S.supervisor.reloadConfig(), 92)
with open(CONFIG, "w") as config:
    config.write(original)
check("reloadConfig restored", S.supervisor.reloadConfig(), [[[], [], []]])

# --- restart and shutdown -----------------------------------------------------------
sleeper_before = S.supervisor.getProcessInfo("sleeper")["pid"]
check("restart", S.supervisor.restart(), True)
# restart answers before it acts: only a new sleeper shows the restart is done,
# a RUNNING state alone could still be the old tree's.
wait_for("the restart to finish",
         lambda: server().supervisor.getState()["statename"] == "RUNNING"
         and state("sleeper", server()) == "RUNNING"
         and server().supervisor.getProcessInfo("sleeper")["pid"] != sleeper_before)
check("same pid after restart", server().supervisor.getPID(), DAEMON_PID)
check("shutdown", server().supervisor.shutdown(), True)

for line in failures:
    print(line)
sys.exit(1 if failures else 0)
