//! Python's `xmlrpc.client` over supervisorctl's UNIX-socket transport, calling every
//! `supervisor.*` and `system.*` method and fault path (`xmlrpc_all.py`). The script runs
//! against the real supervisord first, which proves its expectations are supervisord's,
//! then against vigild.

use std::path::Path;

use crate::harness::{Daemon, Kind, wait_until};

const CONFIG: &str = concat!(
    crate::harness::common_sections!(),
    r#"
[program:cat]
command={child} --stdin-echo
startsecs=0
stdout_logfile=%(here)s/cat.out
stderr_logfile=%(here)s/cat.err

[program:nolog]
command={child} --echo quiet --sleep 100000
startsecs=0
stdout_logfile=NONE
stderr_logfile=NONE

[program:manual]
command={child} --sleep 100000
autostart=false
startsecs=0
stdout_logfile=%(here)s/manual.out
stderr_logfile=%(here)s/manual.err

[program:failer]
command={child} --exit 3
autostart=false
startsecs=1
startretries=0
stdout_logfile=%(here)s/failer.out
stderr_logfile=%(here)s/failer.err

[program:nofile]
command=%(here)s/no-such-command
autostart=false
stdout_logfile=NONE
stderr_logfile=NONE

[program:noexec]
command=%(here)s/supervisord.conf
autostart=false
stdout_logfile=NONE
stderr_logfile=NONE

[program:web]
command={child} --sleep 100000
numprocs=2
process_name=%(program_name)s_%(process_num)d
startsecs=0
stdout_logfile=%(here)s/%(process_num)d.out
stderr_logfile=%(here)s/%(process_num)d.err

[group:grp]
programs=web
"#
);

fn run_script(kind: Kind) {
    let mut daemon = Daemon::start(kind, CONFIG);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/xmlrpc_all.py");
    let socket = daemon.socket().display().to_string();
    let dir = daemon.dir().display().to_string();
    let pid = daemon.pid().to_string();
    let child = crate::harness::child_bin().display().to_string();
    let outcome = daemon.python(&script, &[&socket, &dir, &pid, &child]);
    assert!(
        outcome.code == 0,
        "xmlrpc_all.py against {kind:?} failed (exit {}):\n{}{}",
        outcome.code,
        outcome.stdout,
        outcome.stderr
    );
    // The script ends with supervisor.shutdown(): the daemon goes away by itself.
    wait_until(&format!("{kind:?} to exit after shutdown"), || daemon.exited());
}

#[test]
fn xmlrpc_script_against_supervisord() {
    run_script(Kind::Supervisord);
}

#[test]
fn xmlrpc_script_against_vigild() {
    run_script(Kind::Vigild);
}
