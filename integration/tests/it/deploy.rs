//! Running vigild the way services are deployed in containers: exit semantics
//! (`on_fatal`, `essential`), environment files and per-program resource
//! limits, each checked by what vigild's exit status, the child or the
//! activity log actually show.

use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, wait_until};

/// A program that gives up after `startretries` under `on_fatal = shutdown`
/// takes the daemon down in order with status 1 (before, only a group's
/// `max_restarts` budget did).
#[test]
fn exhausting_startretries_under_on_fatal_shutdown_exits_1() {
    let sandbox = Sandbox::new();
    sandbox.supervisord_key("on_fatal", "shutdown");
    sandbox.write_config(&[
        Program::child("flaky", &["--sleep", "0.3", "--exit", "3"])
            .set("startsecs", 1)
            .set("startretries", 1),
        Program::child("bystander", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    let bystander = daemon.running_pid("bystander");
    assert_eq!(daemon.wait_exit(TIMEOUT), 1, "{}", daemon.diagnostics());
    assert!(!procfs::exists(bystander), "the bystander was stopped");
    let log = daemon.main_log();
    assert!(log.contains("gave up: flaky entered FATAL state"), "{log}");
    assert!(log.contains("'flaky' is FATAL"), "{log}");
    assert!(log.contains("stopped: bystander"), "{log}");
}

/// supervisord's default (`on_fatal = ignore`) is unchanged: the daemon keeps
/// running with the program FATAL.
#[test]
fn exhausting_startretries_under_on_fatal_ignore_keeps_running() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("flaky", &["--sleep", "0.2", "--exit", "3"])
        .set("startsecs", 1)
        .set("startretries", 0)]);
    let mut daemon = sandbox.start();
    daemon.wait_state("flaky", "FATAL");
    assert_eq!(daemon.poll_exit(), None, "{}", daemon.diagnostics());
}

/// An essential program's exit status becomes vigild's, after the others were
/// stopped in order.
#[test]
fn an_essential_program_exiting_ends_the_daemon_with_its_status() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("job", &["--sleep", "1", "--exit", "7"])
            .set("startsecs", 0)
            .set("autorestart", "true")
            .set("essential", "true"),
        Program::child("sidecar", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    let sidecar = daemon.running_pid("sidecar");
    assert_eq!(daemon.wait_exit(TIMEOUT), 7, "{}", daemon.diagnostics());
    assert!(!procfs::exists(sidecar), "the sidecar was stopped");
    let log = daemon.main_log();
    assert!(log.contains("'job' exited (exit status 7); it is essential"), "{log}");
    assert!(log.contains("stopped: sidecar"), "{log}");
    // autorestart does not apply to an essential program: one spawn only.
    assert_eq!(log.matches("spawned: 'job'").count(), 1, "{log}");
}

/// A successful essential program (a one-shot job) ends the daemon with 0.
#[test]
fn an_essential_program_exiting_0_ends_the_daemon_with_0() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("job", &["--sleep", "1", "--exit", "0"])
            .set("startsecs", 0)
            .set("essential", "true"),
        Program::child("sidecar", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    daemon.running_pid("sidecar");
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
}

/// A death by signal N is reported as a shell does, 128 + N.
#[test]
fn an_essential_program_killed_by_a_signal_ends_the_daemon_with_128_plus_n() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("job", &["--sleep", "3600"])
        .set("startsecs", 0)
        .set("essential", "true")]);
    let mut daemon = sandbox.start();
    let pid = daemon.running_pid("job");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the job");
    assert_eq!(daemon.wait_exit(TIMEOUT), 128 + 9, "{}", daemon.diagnostics());
}

/// An essential program that never gets going ends the daemon with its last
/// failure status once it is FATAL, even under `on_fatal = ignore`.
#[test]
fn an_essential_program_going_fatal_ends_the_daemon() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("job", &["--sleep", "0.3", "--exit", "5"])
            .set("startsecs", 1)
            .set("startretries", 1)
            .set("essential", "true"),
        Program::child("sidecar", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    assert_eq!(daemon.wait_exit(TIMEOUT), 5, "{}", daemon.diagnostics());
}

/// Stopping an essential program on purpose is not its end: `restart` works
/// and the daemon keeps running.
#[test]
fn stopping_an_essential_program_by_hand_keeps_the_daemon() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("job", &["--sleep", "3600"])
        .set("startsecs", 0)
        .set("essential", "true")]);
    let mut daemon = sandbox.start();
    let first = daemon.running_pid("job");
    daemon.ctl(&["restart", "job"]).expect_code(0);
    wait_until(TIMEOUT, "job to run again", || {
        daemon.state("job") == "RUNNING" && daemon.process_pid("job") != first
    });
    daemon.ctl(&["stop", "job"]).expect_code(0);
    assert_eq!(daemon.state("job"), "STOPPED");
    assert_eq!(daemon.poll_exit(), None, "{}", daemon.diagnostics());
}

/// One XML-RPC call on the daemon's unix socket; the raw HTTP answer.
fn xmlrpc(sandbox: &Sandbox, method: &str, params: &str) -> String {
    use std::io::{Read, Write};
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName>\
         <params>{params}</params></methodCall>"
    );
    let mut stream = std::os::unix::net::UnixStream::connect(sandbox.socket()).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        stream,
        "POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

const SECRET: &str = "s3cr3t-v4lue";

/// The child gets what the files say, in the documented precedence: daemon
/// environment < `[supervisord] environment` < env files (supervisord's, the
/// group's, the program's) < `environment=`; dotenv quoting, `export` and
/// `${VAR}` references work; the values appear nowhere but in the child.
#[test]
fn env_files_reach_the_child_in_order_and_nowhere_else() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "global.env",
        "# shared by every program\nV_GLOBAL_FILE=global\nV_OVER=global-file\nV_DAEMON=from-file\n",
    );
    sandbox.write("group.env", "V_OVER=group-file\n");
    sandbox.write(
        "app.env",
        format!(
            "export V_SECRET=\"{SECRET}\"\nV_QUOTED='a # b $HOME'\nV_REF=\"${{V_GLOBAL_FILE}}/${{V_FROM_DAEMON}}\"\n\
             V_ESC=\"tab\\there\"\nV_PROG=file\n"
        ),
    );
    sandbox.supervisord_key("environment", "V_OVER=global-env,V_GLOBAL_ENV=yes");
    sandbox.supervisord_key("env_file", "global.env");
    let names = [
        "V_GLOBAL_FILE",
        "V_OVER",
        "V_DAEMON",
        "V_SECRET",
        "V_QUOTED",
        "V_REF",
        "V_ESC",
        "V_PROG",
        "V_GLOBAL_ENV",
    ];
    let mut args = Vec::new();
    for name in names {
        args.extend(["--print-env", name]);
    }
    args.extend(["--sleep", "3600"]);
    let program = Program::child("app", &args)
        .set("startsecs", 0)
        .set("env_file", "app.env")
        .set("environment", "V_PROG=environment");
    sandbox.write_config_text(&format!(
        "{}[group:g]\nprograms=app\nenv_file=group.env\n",
        sandbox.programs_text(&[program])
    ));
    let env: std::collections::BTreeMap<String, String> =
        [("V_FROM_DAEMON", "daemon"), ("V_DAEMON", "daemon")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let daemon = sandbox.start_with(&[], &env);
    daemon.running_pid("g:app");
    wait_until(TIMEOUT, "the child to print its environment", || {
        crate::out_lines(&sandbox, "app").len() >= names.len()
    });
    assert_eq!(
        crate::out_lines(&sandbox, "app"),
        [
            "V_GLOBAL_FILE=global",
            "V_OVER=group-file",
            "V_DAEMON=from-file",
            &format!("V_SECRET={SECRET}"),
            "V_QUOTED=a # b $HOME",
            "V_REF=global/daemon",
            "V_ESC=tab\there",
            "V_PROG=environment",
            "V_GLOBAL_ENV=yes",
        ]
    );
    // Nowhere else: status, --json, XML-RPC, the activity log.
    let mut seen = vec![
        daemon.ctl(&["status"]).stdout,
        daemon.ctl(&["--json", "status"]).stdout,
        daemon.ctl(&["--json", "avail"]).stdout,
        xmlrpc(&sandbox, "supervisor.getAllConfigInfo", ""),
        xmlrpc(
            &sandbox,
            "supervisor.getProcessInfo",
            "<param><value><string>g:app</string></value></param>",
        ),
    ];
    assert!(seen[3].contains("g") && seen[3].contains("app"), "{}", seen[3]);
    // At debug the activity log copies what the program prints (as
    // supervisord does); the program printed its own environment, so its
    // output entries are left out: vigild's own lines must not show it.
    let mut own = String::new();
    let mut in_output = false;
    for line in daemon.main_log().lines() {
        if crate::log_time_ms(line).is_some() {
            in_output = line.contains(" DEBG 'app' stdout output:");
        }
        if !in_output {
            own.push_str(line);
            own.push('\n');
        }
    }
    assert!(own.contains("spawned: 'app'"), "{own}");
    seen.push(own);
    for text in seen {
        assert!(!text.contains(SECRET), "{text}");
    }
}

/// `vigild --check` reports a missing env file at the config line naming it
/// and a bad line at its own file:line, without quoting the value.
#[test]
fn check_reports_env_file_errors_with_file_and_line() {
    let sandbox = Sandbox::new();
    sandbox.write("bad.env", format!("OK=1\nBROKEN=\"{SECRET}\n"));
    sandbox.write_config(&[
        Program::child("a", &["--sleep", "1"]).set("env_file", "missing.env"),
        Program::child("b", &["--sleep", "1"]).set("env_file", "bad.env"),
    ]);
    let mut command = std::process::Command::new(vigil_integration::vigild_bin());
    command.arg("--check").arg("-c").arg(sandbox.config_path());
    let output = vigil_integration::run(&mut command, TIMEOUT);
    assert_ne!(output.code, 0, "{output:#?}");
    let text = format!("{}{}", output.stdout, output.stderr);
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let line = config.lines().position(|l| l == "env_file=missing.env").expect("key") + 1;
    let at = format!(
        "{}:{line}: [program:a] env_file: cannot read env file",
        sandbox.config_path().display()
    );
    assert!(text.contains(&at), "{text}");
    let bad = format!("{}:2: env file: BROKEN", sandbox.join("bad.env").display());
    assert!(text.contains(&bad), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

/// A changed env file restarts exactly the programs that read it, and
/// `update --dry-run` says so first.
#[test]
fn update_restarts_exactly_the_programs_whose_env_file_changed() {
    let sandbox = Sandbox::new();
    sandbox.write("shared.env", "TOKEN=one\n");
    let reader = |name: &str| {
        Program::child(name, &["--print-env", "TOKEN", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("env_file", "shared.env")
    };
    sandbox.write_config(&[
        reader("r1"),
        reader("r2"),
        Program::child("other", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    let (r1, r2, other) =
        (daemon.running_pid("r1"), daemon.running_pid("r2"), daemon.running_pid("other"));
    sandbox.write("shared.env", "TOKEN=two\n");
    daemon.ctl(&["update", "--dry-run"]).expect_code(0).expect_lines(&[
        "r1: stopped (dry run)",
        "r1: would restart r1 (env_file contents)",
        "r1: updated process group (dry run)",
        "r2: stopped (dry run)",
        "r2: would restart r2 (env_file contents)",
        "r2: updated process group (dry run)",
    ]);
    assert_eq!(daemon.process_pid("r1"), r1, "a dry run changes nothing");
    daemon.ctl(&["update"]).expect_code(0);
    for (name, old) in [("r1", r1), ("r2", r2)] {
        wait_until(TIMEOUT, &format!("{name} to restart"), || {
            daemon.state(name) == "RUNNING" && daemon.process_pid(name) != old
        });
        crate::wait_out_line(&sandbox, name, "TOKEN=two");
    }
    assert_eq!(daemon.process_pid("other"), other, "other does not read the file");
}

/// The value columns of one row of a /proc/PID/limits text.
fn limit_row<'a>(limits: &'a str, row: &str) -> Vec<&'a str> {
    let line =
        limits.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("{row}: {limits}"));
    line[row.len()..].split_whitespace().collect()
}

/// `rlimit_*` keys (and a TOML-style table is covered by the config tests) are
/// applied in the child before exec: its own /proc/self/limits shows them.
#[test]
fn rlimits_are_what_the_child_sees_in_proc_self_limits() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::raw("limited", "/bin/cat /proc/self/limits")
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("rlimit_nofile", "256:512")
        .set("rlimit_core", "1MB:2MB")
        .set("rlimit_cpu", "100:unlimited")
        .set("rlimit_stack", "unlimited")]);
    let daemon = sandbox.start();
    daemon.wait_state("limited", "EXITED");
    let limits = sandbox.read_text("logs/limited.out");
    assert_eq!(limit_row(&limits, "Max open files"), ["256", "512", "files"], "{limits}");
    assert_eq!(limit_row(&limits, "Max core file size"), ["1048576", "2097152", "bytes"]);
    assert_eq!(limit_row(&limits, "Max cpu time"), ["100", "unlimited", "seconds"]);
    assert_eq!(limit_row(&limits, "Max stack size"), ["unlimited", "unlimited", "bytes"]);
}

/// A hard limit above vigild's own is refused by `vigild --check` up front when
/// vigild lacks CAP_SYS_RESOURCE (dropped here with setpriv), and bad values
/// are errors at their line.
#[test]
fn check_reports_limits_vigild_cannot_give() {
    let sandbox = Sandbox::new();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("limit");
    sandbox.write_config(&[
        Program::child("greedy", &["--sleep", "1"])
            .set("rlimit_nofile", format!("1024:{}", hard + 1)),
        Program::child("bad", &["--sleep", "1"]).set("rlimit_nproc", "10:5"),
    ]);
    let config = sandbox.config_path();
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--bounding-set=-sys_resource", "--inh-caps=-sys_resource"])
        .arg(vigil_integration::vigild_bin())
        .arg("--check")
        .arg("-c")
        .arg(&config);
    let output = vigil_integration::run(&mut command, TIMEOUT);
    let text = format!("{}{}", output.stdout, output.stderr);
    assert_ne!(output.code, 0, "{text}");
    assert!(
        text.contains(&format!("nofile: the hard limit is above vigild's own ({hard})")),
        "{text}"
    );
    assert!(text.contains("CAP_SYS_RESOURCE"), "{text}");
    assert!(text.contains("[program:bad] rlimit_nproc: nproc: the soft limit is above"), "{text}");
}
