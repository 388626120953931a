//! One repetition of one scenario against one target: its directory, its
//! daemon and the control commands sent to it.
//!
//! Process safety lives here. The harness signals only the daemon it
//! launched (while the reaper has not collected it, so the pid cannot have
//! been reused), descendants of that daemon recorded from `/proc` and checked
//! again by pid and start time, and processes re-parented to the harness as a
//! subreaper (which can only be descendants of what it spawned). Every wait
//! is bounded, and dropping a [`Run`] kills whatever is left, so an error or
//! a panic in a scenario leaves no process behind.

use crate::config::Spec;
use crate::procfs;
use crate::reaper::{Exit, Reaper};
use crate::status::{self, ProcessLine};
use crate::target::{Model, Target, Vars, expand};
use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// Timeouts and pacing shared by every run.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// Pause between two `status` polls.
    pub poll_interval: Duration,
    /// Longest a single control command may take.
    pub ctl_timeout: Duration,
    /// Longest SIGTERM-to-exit before the daemon is SIGKILLed.
    pub shutdown_timeout: Duration,
    /// Keep run directories instead of deleting them.
    pub keep: bool,
    /// Parent directory of run directories.
    pub tmp_root: PathBuf,
}

/// What a finished command printed and when it ran.
#[derive(Debug)]
pub struct CmdOutput {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    pub started: Instant,
    pub ended: Instant,
}

impl CmdOutput {
    pub fn elapsed(&self) -> Duration {
        self.ended - self.started
    }
}

/// Runs `argv` to completion in `cwd`, capturing its output, killing it after
/// `timeout`.
pub async fn run_command(
    reaper: &Reaper,
    argv: &[String],
    cwd: &Path,
    timeout: Duration,
) -> anyhow::Result<CmdOutput> {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut spawned = reaper.spawn(&mut command).with_context(|| format!("running {}", argv[0]))?;
    let stdout = spawned.child.stdout.take().expect("stdout was piped");
    let stderr = spawned.child.stderr.take().expect("stderr was piped");
    let mut stdout = tokio::process::ChildStdout::from_std(stdout)?;
    let mut stderr = tokio::process::ChildStderr::from_std(stderr)?;
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a?;
        b?;
        let exit = (&mut spawned.exit).await.context("reaper dropped the child")?;
        anyhow::Ok((exit, out, err))
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(result) => {
            let (exit, out, err) = result?;
            Ok(CmdOutput {
                exit,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
                started,
                ended: Instant::now(),
            })
        }
        Err(_) => {
            reaper.signal_live(spawned.pid, Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), spawned.exit).await;
            bail!("'{}' did not finish within {:?}", argv.join(" "), timeout)
        }
    }
}

/// The launched daemon.
pub struct Daemon {
    pub pid: i32,
    pub launched: Instant,
    exit: Option<oneshot::Receiver<Exit>>,
    exited: Option<Exit>,
    /// Descendants seen in `/proc` while the daemon lived, with start times.
    known: HashMap<i32, u64>,
    reaper: Reaper,
}

impl Daemon {
    /// True until the daemon's exit has been collected.
    pub fn alive(&mut self) -> bool {
        self.poll_exit();
        self.exited.is_none()
    }

    fn poll_exit(&mut self) {
        if let Some(rx) = &mut self.exit {
            match rx.try_recv() {
                Ok(exit) => {
                    self.exited = Some(exit);
                    self.exit = None;
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => {
                    // Only if the reaper task ended: the status is lost, but
                    // the daemon is certainly no longer ours to signal.
                    self.exited = Some(Exit::Signal(0));
                    self.exit = None;
                }
            }
        }
    }

    /// CPU seconds used so far (NaN once gone).
    pub fn cpu(&self) -> f64 {
        procfs::cpu_seconds(self.pid).unwrap_or(f64::NAN)
    }

    /// Records the daemon's current descendants, so they can be killed if
    /// they outlive it.
    pub fn remember_descendants(&mut self) {
        if self.exited.is_none() {
            self.known.extend(procfs::descendants(self.pid));
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL after `timeout`). Returns the
    /// time from SIGTERM to the exit being collected.
    pub async fn stop(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        self.remember_descendants();
        let t0 = Instant::now();
        if !self.reaper.signal_live(self.pid, Signal::SIGTERM) {
            self.poll_exit();
            bail!(
                "daemon had already exited ({})",
                self.exited.map_or("?".into(), |e| e.to_string())
            );
        }
        let rx = self.exit.take().expect("a live daemon has an exit channel");
        let result = match tokio::time::timeout(timeout, rx).await {
            Ok(exit) => {
                self.exited = Some(exit.unwrap_or(Exit::Signal(0)));
                Ok(t0.elapsed())
            }
            Err(_) => {
                self.reaper.signal_live(self.pid, Signal::SIGKILL);
                self.exited = Some(Exit::Signal(Signal::SIGKILL as i32));
                Err(anyhow::anyhow!("daemon did not exit within {timeout:?} of SIGTERM"))
            }
        };
        let leftovers = self.kill_leftovers();
        match result {
            Ok(_) if leftovers > 0 => {
                bail!("{leftovers} program process(es) outlived the daemon and were killed")
            }
            other => other,
        }
    }

    /// Kills recorded descendants still alive (same pid and start time) and
    /// anything re-parented to the harness; returns how many.
    fn kill_leftovers(&mut self) -> usize {
        let mut killed = std::collections::HashSet::new();
        for (&pid, &start) in &self.known {
            if procfs::alive_same(pid, start)
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).is_ok()
            {
                killed.insert(pid);
            }
        }
        self.known.clear();
        killed.len() + self.reaper.kill_adopted(&killed)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.poll_exit();
        if self.exited.is_none() {
            self.remember_descendants();
            self.reaper.signal_live(self.pid, Signal::SIGKILL);
        }
        self.kill_leftovers();
    }
}

/// A fresh directory, config and daemon for one repetition.
pub struct Run {
    pub target: Target,
    pub spec: Spec,
    pub vars: Vars,
    pub reaper: Reaper,
    pub pacing: Pacing,
    /// Declared before `dir` so the daemon is gone before its files are.
    pub daemon: Option<Daemon>,
    dir: Option<tempfile::TempDir>,
}

impl Run {
    /// Creates the run directory (not the daemon).
    pub fn new(target: &Target, reaper: &Reaper, pacing: &Pacing) -> anyhow::Result<Run> {
        std::fs::create_dir_all(&pacing.tmp_root)?;
        let dir = tempfile::Builder::new()
            .prefix("vb-")
            .tempdir_in(&pacing.tmp_root)
            .context("creating the run directory")?;
        let spec = Spec::in_dir(dir.path());
        let config = match target.model {
            Model::Supervisord => "supervisord.conf",
            Model::S6 => "scan",
            Model::Horust => "services",
        };
        let vars = Vars {
            config: dir.path().join(config),
            dir: dir.path().to_path_buf(),
            sock: spec.socket.clone(),
            programs: 0,
        };
        Ok(Run {
            target: target.clone(),
            spec,
            vars,
            reaper: reaper.clone(),
            pacing: pacing.clone(),
            daemon: None,
            dir: Some(dir),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.vars.dir
    }

    /// Writes the spec in the target's format: the INI file, s6's scan
    /// directory or Horust's service files.
    pub fn write_config(&mut self) -> anyhow::Result<()> {
        self.vars.programs = self.spec.programs.len();
        match self.target.model {
            Model::Supervisord => self.spec.write(&self.vars.config).context("writing the config"),
            Model::S6 => crate::s6::write_scandir(&self.spec, &self.vars.config),
            Model::Horust => crate::horust::write_services(&self.spec, &self.vars.config),
        }
    }

    /// Launches the daemon (the config must be written). Its stdout and
    /// stderr go to a file in the run directory.
    pub fn launch(&mut self) -> anyhow::Result<()> {
        let argv = expand(&self.target.daemon, &self.vars, None)?;
        let out = File::create(self.dir().join("daemon.stdout"))?;
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let launched = Instant::now();
        let spawned = self
            .reaper
            .spawn(&mut command)
            .with_context(|| format!("launching the daemon '{}'", argv.join(" ")))?;
        self.daemon = Some(Daemon {
            pid: spawned.pid,
            launched,
            exit: Some(spawned.exit),
            exited: None,
            known: HashMap::new(),
            reaper: self.reaper.clone(),
        });
        Ok(())
    }

    pub fn daemon(&mut self) -> anyhow::Result<&mut Daemon> {
        self.daemon.as_mut().context("the daemon was not launched")
    }

    /// Fails when the daemon has exited, pointing at its output.
    pub fn check_daemon(&mut self) -> anyhow::Result<()> {
        let dir = self.dir().to_path_buf();
        let d = self.daemon()?;
        if !d.alive() {
            let exit = d.exited.map_or("?".into(), |e| e.to_string());
            let tail = std::fs::read_to_string(dir.join("daemon.stdout")).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!("the daemon exited ({exit}); its last output: {:?}", tail);
        }
        Ok(())
    }

    /// Runs `{ctl} SUFFIX` (with `{name}` filled in).
    pub async fn ctl(&self, suffix: &str, name: Option<&str>) -> anyhow::Result<CmdOutput> {
        let Some(ctl) = &self.target.ctl else {
            bail!("target '{}' has no supervisorctl-compatible CLI", self.target.label)
        };
        let argv = expand(&format!("{ctl} {suffix}"), &self.vars, name)?;
        run_command(&self.reaper, &argv, self.dir(), self.pacing.ctl_timeout).await
    }

    /// Polls `status` until `done` holds for the parsed table and the call's
    /// output (with no programs, only the exit code says the daemon is up).
    /// Returns the call that first showed it.
    pub async fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&BTreeMap<String, ProcessLine>, &CmdOutput) -> bool,
    ) -> anyhow::Result<(CmdOutput, BTreeMap<String, ProcessLine>)> {
        let t0 = Instant::now();
        loop {
            self.check_daemon()?;
            let out = self.ctl("status", None).await?;
            let table = status::parse_status(&out.stdout);
            if done(&table, &out) {
                self.daemon()?.remember_descendants();
                return Ok((out, table));
            }
            if t0.elapsed() > timeout {
                bail!("{what}: not reached within {timeout:?}; last status: {}", summary(&table));
            }
            tokio::time::sleep(self.pacing.poll_interval).await;
        }
    }

    /// Polls until every program in `names` is in `state`.
    pub async fn wait_all(
        &mut self,
        names: &[String],
        state: &str,
        timeout: Duration,
    ) -> anyhow::Result<(CmdOutput, BTreeMap<String, ProcessLine>)> {
        let what = format!("{} programs {state}", names.len());
        self.wait_status(&what, timeout, |table, _| {
            names.iter().all(|n| table.get(n).is_some_and(|l| l.state == state))
        })
        .await
    }

    /// The supervisor's own processes: the daemon, and for s6 every
    /// `s6-supervise` child of `s6-svscan`. Memory, CPU and wake-ups are
    /// summed over these.
    pub fn supervisor_pids(&mut self) -> anyhow::Result<Vec<i32>> {
        let daemon = self.daemon()?.pid;
        let mut pids = vec![daemon];
        if self.target.model == Model::S6 {
            pids.extend(
                procfs::children(daemon)
                    .into_iter()
                    .filter(|&p| crate::s6::is_supervise(&procfs::cmdline(p))),
            );
        }
        Ok(pids)
    }

    /// The processes whose children are the programs: each `s6-supervise`
    /// for s6, the daemon for the others.
    pub fn program_parents(&mut self) -> anyhow::Result<Vec<i32>> {
        let mut pids = self.supervisor_pids()?;
        if self.target.model == Model::S6 {
            pids.remove(0);
        }
        Ok(pids)
    }

    /// The running programs: children of [`Run::program_parents`] running
    /// `is_program`.
    pub fn program_pids(&mut self, is_program: fn(&[String]) -> bool) -> anyhow::Result<Vec<i32>> {
        let mut pids = Vec::new();
        for parent in self.program_parents()? {
            pids.extend(
                procfs::children(parent).into_iter().filter(|&c| is_program(&procfs::cmdline(c))),
            );
        }
        Ok(pids)
    }

    /// CPU seconds of the supervisor's processes, summed.
    pub fn supervisor_cpu(&mut self) -> anyhow::Result<f64> {
        Ok(self.supervisor_pids()?.into_iter().map(|p| procfs::cpu_seconds(p).unwrap_or(0.0)).sum())
    }

    /// Waits until the daemon answers (n = 0) or all of `p000`.. are running
    /// `is_program`: through `status` for a supervisord-compatible target,
    /// through `/proc` for s6 and Horust, which have no such CLI (a program
    /// counts once it has exec'd, as a child of its supervising process).
    /// Returns the start and end of the check that first saw it.
    pub async fn wait_running(
        &mut self,
        n: usize,
        timeout: Duration,
        is_program: fn(&[String]) -> bool,
    ) -> anyhow::Result<Seen> {
        if self.target.model == Model::Supervisord {
            let (out, _) = if n == 0 {
                self.wait_status("daemon up", timeout, |_, out| out.exit.success()).await?
            } else {
                let names = crate::config::names(0..n);
                self.wait_all(&names, "RUNNING", timeout).await?
            };
            return Ok(Seen { started: out.started, ended: out.ended });
        }
        let t0 = Instant::now();
        let mut found: HashSet<i32> = HashSet::new();
        // An s6-supervise runs one program: once found, it is not read again.
        let mut done_parents: HashSet<i32> = HashSet::new();
        let one_each = self.target.model == Model::S6;
        loop {
            self.check_daemon()?;
            let started = Instant::now();
            for parent in self.program_parents()? {
                if done_parents.contains(&parent) {
                    continue;
                }
                for child in procfs::children(parent) {
                    if !found.contains(&child) && is_program(&procfs::cmdline(child)) {
                        found.insert(child);
                        if one_each {
                            done_parents.insert(parent);
                        }
                    }
                }
            }
            let ended = Instant::now();
            if found.len() >= n {
                self.daemon()?.remember_descendants();
                return Ok(Seen { started, ended });
            }
            if t0.elapsed() > timeout {
                bail!(
                    "{n} programs running: not reached within {timeout:?}; {} found in /proc",
                    found.len()
                );
            }
            tokio::time::sleep(self.pacing.poll_interval).await;
        }
    }

    /// Stops the daemon if it runs; returns the SIGTERM-to-exit time.
    pub async fn shutdown(&mut self) -> anyhow::Result<Duration> {
        let timeout = self.pacing.shutdown_timeout;
        self.daemon()?.stop(timeout).await
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Kill first, then delete the files the daemon was writing.
        self.daemon.take();
        if let Some(dir) = self.dir.take()
            && self.pacing.keep
        {
            eprintln!("  kept {}", dir.keep().display());
        }
    }
}

/// When a check first saw the programs running.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub started: Instant,
    pub ended: Instant,
}

/// "500 RUNNING, 3 STARTING" for error messages.
pub fn summary(table: &BTreeMap<String, ProcessLine>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in table.values() {
        *counts.entry(line.state.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "no process lines".into();
    }
    counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
}
