//! vigild under a service manager: the exact sd_notify(3) datagrams it sends on
//! `NOTIFY_SOCKET` (a datagram socket each test binds itself, since systemd is
//! not PID 1 here), and the shipped `vigild.service` checked by
//! `systemd-analyze verify`.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use vigil_integration::{Daemon, Program, Sandbox, TIMEOUT};

/// The fake service manager's end.
struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        Manager { socket }
    }

    /// The next datagram, waiting at most [`TIMEOUT`].
    fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a datagram before the timeout");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram")
    }

    #[track_caller]
    fn expect(&self, datagram: &str) {
        assert_eq!(self.next(), datagram);
    }

    /// `RELOADING=1` with a `MONOTONIC_USEC=` later than `after`; returns it.
    #[track_caller]
    fn expect_reloading(&self, after: u64) -> u64 {
        let datagram = self.next();
        let usec: u64 = datagram
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|usec| usec.parse().ok())
            .unwrap_or_else(|| panic!("not RELOADING=1 with MONOTONIC_USEC: {datagram:?}"));
        assert!(usec > after, "MONOTONIC_USEC {usec} not after {after}");
        usec
    }

    fn nothing_queued(&self) -> Option<String> {
        self.socket.set_nonblocking(true).expect("nonblocking");
        let mut buf = vec![0u8; 4096];
        let queued =
            self.socket.recv(&mut buf).ok().map(|n| String::from_utf8_lossy(&buf[..n]).into());
        self.socket.set_nonblocking(false).expect("blocking");
        queued
    }
}

fn program_a() -> Program {
    // STARTING and RUNNING a second apart: two separate STATUS= lines.
    Program::child(
        "a",
        &["--print-env", "NOTIFY_SOCKET", "--print-env", "WATCHDOG_USEC", "--sleep", "1000"],
    )
    .set("autostart", "false")
    .set("startsecs", "1")
}

fn program_b() -> Program {
    Program::child("b", &["--sleep", "1000"]).set("autostart", "false")
}

/// vigild running `programs` with `NOTIFY_SOCKET` set to a fresh manager's
/// socket, plus the `extra` environment. (Bound in this order, the daemon is
/// dropped before the directory it runs in.)
fn under_manager(programs: &[Program], extra: &[(&str, &str)]) -> (Sandbox, Manager, Daemon) {
    let sandbox = Sandbox::new();
    let socket = sandbox.join("notify.sock");
    let manager = Manager::bind(&socket);
    sandbox.write_config(programs);
    let mut env = BTreeMap::from([("NOTIFY_SOCKET".to_owned(), socket.display().to_string())]);
    env.extend(extra.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())));
    let daemon = sandbox.start_with(&[], &env);
    (sandbox, manager, daemon)
}

/// Start, a state change, `update`, SIGHUP and shutdown, datagram by datagram.
/// The watchdog variables name another pid, so no `WATCHDOG=1` may appear.
#[test]
fn notify_datagrams_in_order() {
    let (sandbox, manager, mut daemon) =
        under_manager(&[program_a()], &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")]);

    manager.expect("READY=1\nSTATUS=1 STOPPED\n");

    daemon.ctl(&["start", "a"]).expect_code(0);
    manager.expect("STATUS=1 STARTING\n");
    manager.expect("STATUS=1 RUNNING\n");
    // Programs never see the daemon's manager.
    let log = sandbox.stdout_log("a");
    vigil_integration::wait_until(TIMEOUT, "a's environment report", || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("WATCHDOG_USEC"))
    });
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "NOTIFY_SOCKET is unset\nWATCHDOG_USEC is unset\n"
    );

    sandbox.write_config(&[program_a(), program_b()]);
    daemon.ctl(&["update"]).expect_code(0);
    let reloaded = manager.expect_reloading(0);
    manager.expect("READY=1\nSTATUS=1 RUNNING, 1 STOPPED\n");

    // A dry run changes nothing and tells the manager nothing.
    sandbox.write_config(&[program_a()]);
    daemon.ctl(&["update", "--dry-run"]).expect_code(0);
    sandbox.write_config(&[program_a(), program_b()]);

    daemon.signal(Signal::SIGHUP);
    manager.expect_reloading(reloaded);
    manager.expect("READY=1\nSTATUS=2 STOPPED\n");

    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    manager.expect("STOPPING=1\n");
    assert_eq!(manager.nothing_queued(), None, "nothing after STOPPING=1");
}

/// With `WATCHDOG_USEC` for this process, `WATCHDOG=1` comes every half period.
#[test]
fn watchdog_keepalives_when_asked() {
    let (_sandbox, manager, mut daemon) =
        under_manager(&[program_b()], &[("WATCHDOG_USEC", "200000")]);
    manager.expect("READY=1\nSTATUS=1 STOPPED\n");
    for _ in 0..3 {
        manager.expect("WATCHDOG=1\n");
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    // Keep-alives may continue while the tree stops; STOPPING=1 comes among them.
    let mut seen = Vec::new();
    while let Some(datagram) = manager.nothing_queued() {
        seen.push(datagram);
    }
    assert!(seen.iter().all(|d| d == "WATCHDOG=1\n" || d == "STOPPING=1\n"), "{seen:?}");
    assert_eq!(seen.iter().filter(|d| *d == "STOPPING=1\n").count(), 1, "{seen:?}");
}

/// After a live upgrade the new image still talks to the service manager (the
/// first image took the variables out of its environment): READY=1 again, and
/// its watchdog keep-alives.
#[test]
fn a_live_upgrade_keeps_notifying_the_manager() {
    let (_sandbox, manager, mut daemon) =
        under_manager(&[program_b()], &[("WATCHDOG_USEC", "60000000")]);
    // A keep-alive right after READY=1, then one every 30 s.
    manager.expect("READY=1\nSTATUS=1 STOPPED\n");
    manager.expect("WATCHDOG=1\n");
    let output = daemon.ctl(&["upgrade"]);
    assert_eq!(output.code, 0, "{output:#?}");
    manager.expect("READY=1\nSTATUS=1 STOPPED\n");
    manager.expect("WATCHDOG=1\n");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    manager.expect("STOPPING=1\n");
}

/// The shipped unit passes `systemd-analyze verify` (which needs no running
/// systemd); installed as `vigild.service` with the binaries it names on a
/// temporary search path.
#[test]
fn unit_file_verifies() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.is_file(),
        "systemd-analyze is missing: install it with `apt-get install systemd` (scripts/test does)"
    );
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/vigild.service");
    let text = std::fs::read_to_string(&unit).expect("packaging/vigild.service");
    assert!(text.contains("Type=notify\n"), "{text}");
    let sandbox = Sandbox::new();
    // verify checks that ExecStart=/ExecReload= binaries exist: point them at
    // the ones just built.
    let rewritten = text
        .replace("/usr/bin/vigild", &vigil_integration::vigild_bin().display().to_string())
        .replace("/usr/bin/vigilctl", &vigil_integration::vigilctl_bin().display().to_string());
    let installed = sandbox.join("vigild.service");
    std::fs::write(&installed, rewritten).unwrap();
    let output = vigil_integration::run(
        // vigild(8) comes with the package, not with the build tree.
        std::process::Command::new(analyze).args(["verify", "--man=no"]).arg(&installed),
        Duration::from_secs(120),
    );
    // Complaints about units the host lacks (no systemd as PID 1 here) are not
    // about ours; anything naming vigild.service is.
    let ours: Vec<&str> = output
        .stderr
        .lines()
        .chain(output.stdout.lines())
        .filter(|line| line.contains("vigild.service"))
        .collect();
    assert!(ours.is_empty() && output.code == 0, "{output:#?}");
}
