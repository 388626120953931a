//! `vigilctl top` in a real pseudo-terminal: a private tmux server runs a
//! shell, the test types into it with `send-keys` and reads the screen with
//! `capture-pane`, and asks tmux whether the alternate screen is on and the
//! cursor shown.

use std::path::PathBuf;
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, run, vigilctl_bin, wait_for};

/// The shell prompt inside the pane, to tell the shell's screen from top's.
const PROMPT: &str = "vigil-shell$ ";

/// A tmux server of this test's own (its socket in the sandbox), killed when
/// the test ends however it ends.
struct Tmux {
    socket: PathBuf,
    server: Option<i32>,
}

impl Tmux {
    /// A detached 120x32 session running `sh` with a known prompt.
    fn start(sandbox: &Sandbox) -> Tmux {
        let mut tmux = Tmux { socket: sandbox.join("tmux.sock"), server: None };
        tmux.run(&["new-session", "-d", "-s", "t", "-x", "120", "-y", "32", "sh"]);
        let pid = tmux.run(&["display-message", "-p", "-t", "t", "#{pid}"]);
        tmux.server = Some(pid.trim().parse().expect("the tmux server's pid"));
        // Set here, not in the environment: dash gives root its own prompt.
        tmux.line(&format!("PS1='{PROMPT}'; clear"));
        wait_for(TIMEOUT, "the shell's prompt", || {
            tmux.screen().trim_end().ends_with(PROMPT.trim_end()).then_some(())
        });
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]).args(args).env_remove("TMUX");
        let output = run(&mut command, TIMEOUT);
        assert_eq!(output.code, 0, "tmux {args:?}: {}", output.stderr);
        output.stdout
    }

    /// Types `keys` (tmux key names: `Enter`, `C-c`, or literal text).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types a line of text and Enter.
    fn line(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// `(alternate screen on, cursor shown)`.
    fn modes(&self) -> (bool, bool) {
        let flags =
            self.run(&["display-message", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}"]);
        let mut flags = flags.split_whitespace().map(|flag| flag == "1");
        (flags.next().unwrap_or(false), flags.next().unwrap_or(false))
    }

    /// Waits until the screen shows every one of `texts`; returns it.
    fn wait_screen(&self, what: &str, texts: &[&str]) -> String {
        wait_for(TIMEOUT, what, || {
            let screen = self.screen();
            texts.iter().all(|text| screen.contains(text)).then_some(screen)
        })
    }

    /// The pid of the shell's child (top), once there is one.
    fn top_pid(&self) -> i32 {
        let shell: i32 = self
            .run(&["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("the pane's pid");
        wait_for(TIMEOUT, "top under the shell", || procfs::children(shell).first().copied())
    }

    /// Waits for top to have given the terminal back: the shell's screen,
    /// alternate screen off, cursor shown.
    fn wait_restored(&self, what: &str) -> String {
        wait_for(TIMEOUT, what, || {
            let screen = self.screen();
            let restored = self.modes() == (false, true)
                && !screen.contains("RESTARTS")
                && screen.trim_end().ends_with(PROMPT.trim_end());
            restored.then_some(screen)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket).arg("kill-server");
        let _ = run(&mut command, TIMEOUT);
        if let Some(pid) = self.server {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn top_command(sandbox: &Sandbox) -> String {
    format!("{} -c {} top", vigilctl_bin().display(), sandbox.config_path().display())
}

/// A screen line that starts with `name` (a table row).
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.split_whitespace().next() == Some(name))
}

#[test]
fn top_shows_the_table_stops_a_program_and_restores_the_terminal() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("alpha", &["--echo", "alpha says hi", "--sleep", "3600"])
            .set("startsecs", 0),
        Program::child("beta", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("gamma", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    daemon.wait_state("alpha", "RUNNING");
    daemon.wait_state("beta", "RUNNING");
    let tmux = Tmux::start(&sandbox);
    tmux.line(&top_command(&sandbox));

    // The table lists every program, the first one selected and its log followed.
    let screen = tmux.wait_screen(
        "top's table",
        &["vigil top", "RESTARTS", "alpha", "beta", "gamma", "alpha stdout", "alpha says hi"],
    );
    assert!(row(&screen, "alpha").is_some_and(|r| r.contains("RUNNING")), "{screen}");
    assert!(row(&screen, "gamma").is_some_and(|r| r.contains("STOPPED")), "{screen}");
    assert_eq!(tmux.modes(), (true, false), "alternate screen, cursor hidden");

    // `j` selects beta (the log pane follows it), `x` stops it.
    tmux.keys(&["j"]);
    tmux.wait_screen("beta selected", &["beta stdout"]);
    tmux.keys(&["x"]);
    daemon.wait_state("beta", "STOPPED");
    let screen = tmux.wait_screen("the stop reported", &["beta: stopped"]);
    let screen = if row(&screen, "beta").is_some_and(|r| r.contains("STOPPED")) {
        screen
    } else {
        wait_for(TIMEOUT, "beta's row STOPPED", || {
            let screen = tmux.screen();
            row(&screen, "beta").is_some_and(|r| r.contains("STOPPED")).then_some(screen)
        })
    };
    assert!(row(&screen, "alpha").is_some_and(|r| r.contains("RUNNING")), "{screen}");
    assert_eq!(daemon.state("alpha"), "RUNNING");

    // `/` filters; `s` starts the one row left.
    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-t", "t", "-l", "gam"]);
    tmux.keys(&["Enter"]);
    // The filter is kept (the footer no longer edits it) and hides the others.
    let screen = wait_for(TIMEOUT, "only gamma shown", || {
        let screen = tmux.screen();
        let kept = screen.contains("filter \"gam\"") && !screen.contains("filter: ");
        (kept && row(&screen, "gamma").is_some()).then_some(screen)
    });
    assert!(row(&screen, "alpha").is_none() && row(&screen, "beta").is_none(), "{screen}");
    tmux.keys(&["s"]);
    daemon.wait_state("gamma", "RUNNING");

    // `q` gives the terminal back and exits 0.
    tmux.keys(&["q"]);
    tmux.wait_restored("the shell after q");
    tmux.line("echo top-exit=$?");
    tmux.wait_screen("top's exit status", &["top-exit=0"]);

    // Ctrl-C does too.
    tmux.line("clear");
    tmux.line(&top_command(&sandbox));
    tmux.wait_screen("top again", &["RESTARTS", "gamma"]);
    tmux.keys(&["C-c"]);
    tmux.wait_restored("the shell after Ctrl-C");

    // And SIGTERM, which top reports once the screen is back.
    tmux.line("clear");
    tmux.line(&top_command(&sandbox));
    tmux.wait_screen("top once more", &["RESTARTS", "gamma"]);
    let top = tmux.top_pid();
    kill(Pid::from_raw(top), Signal::SIGTERM).expect("SIGTERM to top");
    let screen = tmux.wait_restored("the shell after SIGTERM");
    assert!(screen.contains("top: ended by SIGTERM"), "{screen}");
}

#[test]
fn top_restores_the_terminal_and_says_why_when_the_daemon_goes_away() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("solo", &["--sleep", "3600"]).set("startsecs", 0)]);
    let mut daemon = sandbox.start();
    daemon.wait_state("solo", "RUNNING");
    let tmux = Tmux::start(&sandbox);
    tmux.line(&top_command(&sandbox));
    tmux.wait_screen("top's table", &["RESTARTS", "solo", "RUNNING"]);

    daemon.ctl(&["shutdown"]).expect_code(0);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    let screen = tmux.wait_restored("the shell after the daemon left");
    assert!(screen.contains("top: lost the connection to vigild"), "{screen}");
    tmux.line("echo top-exit=$?");
    tmux.wait_screen("top's exit status", &["top-exit=1"]);
}

#[test]
fn top_goes_on_across_a_live_upgrade_without_repeating_log_lines() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("w", &["--count", "400", "0.05"])
        .set("startsecs", 0)
        .set("autorestart", "false")]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("w");
    let tmux = Tmux::start(&sandbox);
    tmux.line(&top_command(&sandbox));
    tmux.wait_screen("top following w", &["RESTARTS", "w stdout", "line 0"]);
    let output = daemon.ctl(&["upgrade"]);
    assert_eq!(output.code, 0, "{output:#?}");
    let screen = tmux.wait_screen("top connected again", &["connected to vigild again"]);
    assert_eq!(tmux.modes(), (true, false), "still top's screen: {screen}");
    // The log pane goes on from where it was: each line once, in order.
    let screen = wait_for(TIMEOUT, "more lines after the upgrade", || {
        let screen = tmux.screen();
        let last =
            screen.lines().filter_map(|line| line.trim().strip_prefix("line ")).next_back()?;
        (last.parse::<u32>().ok()? > 120).then_some(screen)
    });
    let numbers: Vec<u32> =
        screen.lines().filter_map(|line| line.trim().strip_prefix("line ")?.parse().ok()).collect();
    assert!(numbers.windows(2).all(|pair| pair[1] == pair[0] + 1), "{screen}");
    assert_eq!(daemon.running_pid("w"), pid);
    tmux.keys(&["q"]);
    tmux.wait_restored("the shell after q");
    tmux.line("echo top-exit=$?");
    tmux.wait_screen("top's exit status", &["top-exit=0"]);
}
