//! The performance scenarios S1-S10 and the loop that runs them.
//!
//! Each scenario case runs `repeats` times per target, targets alternating
//! (the order rotates with the repetition, so neither always runs first on
//! a warm or cold machine). Every repetition is a new [`Run`]: new directory,
//! new config, new daemon. A failed repetition is noted and the suite goes
//! on; a global budget skips what would run past it. A case that does not fit
//! a target's model (s6 and Horust have no `startsecs`, status RPC, log
//! capture through the supervisor, `update` or FATAL state), or a target that
//! is not installed, gets a note with the reason instead of a figure.

use crate::config::{Program, names};
use crate::logs;
use crate::procfs;
use crate::reaper::Reaper;
use crate::run::{Pacing, Run, Seen, run_command};
use crate::stats::{Measure, Results, median};
use crate::status::ProcessLine;
use crate::target::{Model, Target};
use crate::xmlrpc;
use anyhow::{Context, bail, ensure};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sizes and durations of the scenarios (the `--s*` knobs).
#[derive(Debug, Clone)]
pub struct Options {
    pub scenarios: BTreeSet<String>,
    pub repeats: usize,
    pub s1_n: Vec<usize>,
    pub s1_startsecs: Vec<u32>,
    pub s2_n: Vec<usize>,
    pub s3_n: usize,
    pub idle: Duration,
    pub s4_n: usize,
    pub s4_calls: usize,
    pub s5_kills: usize,
    /// Programs running beside the one S5 kills, in its second case (0: none).
    pub s5_others: usize,
    pub s6_bytes: u64,
    /// The generator's log format (raw: supervisord's capture).
    pub s6_format: crate::logs::Format,
    pub s7_n: usize,
    pub s8_n: usize,
    pub s9_n: usize,
    /// Run S9 against targets that skip it by default (supervisord).
    pub s9_all_targets: bool,
    /// S10 program counts.
    pub s10_n: Vec<usize>,
    /// Quiet time before reading idle figures.
    pub settle: Duration,
    pub spawn_timeout: Duration,
    pub restart_timeout: Duration,
    pub log_timeout: Duration,
    pub budget: Duration,
    pub rpc_path: String,
    /// This binary: the S6 generator and the S8 crashing program.
    pub exe: PathBuf,
}

/// One scenario case.
#[derive(Debug, Clone, PartialEq)]
pub enum Case {
    Spawn {
        n: usize,
        startsecs: u32,
    },
    Memory {
        n: usize,
    },
    Idle {
        n: usize,
    },
    Status {
        n: usize,
    },
    /// kill -9 of one program while `others` more run beside it.
    Restart {
        others: usize,
    },
    Logs {
        rotate: bool,
    },
    Update {
        n: usize,
    },
    CrashLoop {
        n: usize,
    },
    Scale {
        n: usize,
    },
    /// `vigilctl upgrade` with `n` programs running (vigild only).
    Upgrade {
        n: usize,
    },
}

impl Case {
    pub fn scenario(&self) -> &'static str {
        match self {
            Case::Spawn { .. } => "S1 spawn",
            Case::Memory { .. } => "S2 memory",
            Case::Idle { .. } => "S3 idle",
            Case::Status { .. } => "S4 status",
            Case::Restart { .. } => "S5 restart",
            Case::Logs { .. } => "S6 logs",
            Case::Update { .. } => "S7 update",
            Case::CrashLoop { .. } => "S8 crash loop",
            Case::Scale { .. } => "S9 scale",
            Case::Upgrade { .. } => "S10 upgrade",
        }
    }

    /// Why this case does not run against a target of `model`, if it does
    /// not: it needs something that model has no equivalent for.
    pub fn skip_reason(&self, model: Model) -> Option<String> {
        let m = model.name();
        let reason = match (model, self) {
            (Model::Supervisord, _)
            | (_, Case::Spawn { startsecs: 0, .. })
            | (Model::S6, Case::Memory { .. })
            | (_, Case::Memory { n: 1.. } | Case::Idle { .. })
            | (_, Case::Restart { .. } | Case::Scale { .. }) => return None,
            (Model::Horust, Case::Memory { n: 0 }) => {
                "Horust exits at once when it has no service to run".into()
            }
            (_, Case::Spawn { .. }) => {
                format!("{m} has no startsecs; its figures are in the startsecs=0 rows")
            }
            (_, Case::Status { .. }) => {
                format!("{m} has no supervisorctl-compatible status command nor XML-RPC")
            }
            (Model::S6, Case::Logs { .. }) => {
                "s6 captures output with an s6-log process per service, not in the supervisor"
                    .into()
            }
            (_, Case::Logs { .. }) => {
                format!("{m} hands the program a file it opened, no pipe through the supervisor")
            }
            (Model::S6, Case::Update { .. }) => "s6 adds and removes service directories on a \
                 rescan; a changed run script applies at the next restart"
                .into(),
            (_, Case::Update { .. }) => format!("{m} does not reload its services"),
            // supervisord too reads the INI model; the loop runs S10 for vigild only.
            (_, Case::Upgrade { .. }) => {
                format!("{m} cannot replace its own binary while its services run")
            }
            (_, Case::CrashLoop { .. }) => format!(
                "{m} has no startretries and no FATAL state: a crashing service restarts forever"
            ),
        };
        Some(reason)
    }

    fn label(&self, o: &Options) -> String {
        match self {
            Case::Spawn { n, startsecs } => format!("N={n}, startsecs={startsecs}"),
            Case::Memory { n } => format!("N={n} running"),
            Case::Idle { n } => format!("N={n}, {} s idle", o.idle.as_secs_f64()),
            Case::Status { n } => format!("N={n}, median of {}", o.s4_calls),
            Case::Restart { others: 0 } => format!("1 program, median of {} kills", o.s5_kills),
            Case::Restart { others } => {
                format!("1 of {} programs, median of {} kills", others + 1, o.s5_kills)
            }
            Case::Logs { rotate: false } => format!(
                "{} MB, no rotation{}",
                crate::stats::num(o.s6_bytes as f64 / 1e6),
                o.s6_format.label()
            ),
            Case::Logs { rotate: true } => {
                format!("{} MB, rotation 10MB x 5", crate::stats::num(o.s6_bytes as f64 / 1e6))
            }
            Case::Update { n } => {
                format!("{n} running: 1 changed, {} added, {} removed", n / 10, n / 10)
            }
            Case::CrashLoop { n } => format!("{n} x exit 1, startretries=3"),
            Case::Scale { n } | Case::Upgrade { n } => format!("N={n}"),
        }
    }
}

/// The whole suite.
pub struct Bench {
    pub opts: Options,
    pub pacing: Pacing,
    pub targets: Vec<Target>,
    /// Targets asked for or looked for but not installed, with the reason:
    /// each case notes the skip instead of measuring them.
    pub missing: Vec<(String, String)>,
    pub reaper: Reaper,
    pub results: Results,
    started: Instant,
    /// Problems that cost a figure but not the repetition (a target without
    /// the XML-RPC endpoint still gets its CLI figures); moved to the notes.
    warnings: std::cell::RefCell<Vec<String>>,
    /// Sample series of the current repetition; moved to `results.samples`.
    samples: std::cell::RefCell<Vec<(String, Vec<f64>)>>,
}

impl Bench {
    pub fn new(opts: Options, pacing: Pacing, targets: Vec<Target>, reaper: Reaper) -> Bench {
        Bench {
            opts,
            pacing,
            targets,
            missing: Vec::new(),
            reaper,
            results: Results::default(),
            started: Instant::now(),
            warnings: Default::default(),
            samples: Default::default(),
        }
    }

    /// The selected cases, in scenario order.
    pub fn cases(&self) -> Vec<Case> {
        let o = &self.opts;
        let on = |s: &str| o.scenarios.contains(s);
        let mut cases = Vec::new();
        if on("S1") {
            for &startsecs in &o.s1_startsecs {
                cases.extend(o.s1_n.iter().map(|&n| Case::Spawn { n, startsecs }));
            }
        }
        if on("S2") {
            cases.extend(o.s2_n.iter().map(|&n| Case::Memory { n }));
        }
        if on("S3") {
            cases.push(Case::Idle { n: o.s3_n });
        }
        if on("S4") {
            cases.push(Case::Status { n: o.s4_n });
        }
        if on("S5") {
            cases.push(Case::Restart { others: 0 });
            if o.s5_others > 0 {
                cases.push(Case::Restart { others: o.s5_others });
            }
        }
        if on("S6") {
            cases.push(Case::Logs { rotate: false });
            // A formatted log is verified record by record, which a rotation
            // may cut anywhere: without rotation only.
            if o.s6_format == crate::logs::Format::Raw {
                cases.push(Case::Logs { rotate: true });
            }
        }
        if on("S7") {
            cases.push(Case::Update { n: o.s7_n });
        }
        if on("S8") {
            cases.push(Case::CrashLoop { n: o.s8_n });
        }
        if on("S9") {
            cases.push(Case::Scale { n: o.s9_n });
        }
        if on("S10") {
            for &n in &o.s10_n {
                cases.push(Case::Upgrade { n });
            }
        }
        cases
    }

    /// Runs every case; failures and skips end up in `results.notes`.
    pub async fn run_all(&mut self) {
        for case in self.cases() {
            let label = case.label(&self.opts);
            let mut skips: Vec<(String, String)> = self.missing.clone();
            skips.extend(
                self.targets.iter().filter_map(|t| {
                    case.skip_reason(t.model).map(|reason| (t.label.clone(), reason))
                }),
            );
            for (target, reason) in skips {
                let what = format!("{} [{label}] {target}", case.scenario());
                eprintln!("skip {what}: {reason}");
                self.results.notes.push(format!("{what}: skipped: {reason}"));
            }
            for rep in 0..self.opts.repeats {
                let mut order = self.targets.clone();
                let len = order.len().max(1);
                order.rotate_left(rep % len);
                for target in order {
                    if case.skip_reason(target.model).is_some() {
                        continue;
                    }
                    if matches!(case, Case::Scale { .. })
                        && !target.runs_s9
                        && !self.opts.s9_all_targets
                    {
                        continue;
                    }
                    // Only vigild replaces its binary while its programs run.
                    if matches!(case, Case::Upgrade { .. }) && target.label != "vigil" {
                        continue;
                    }
                    let what =
                        format!("{} [{label}] #{} {}", case.scenario(), rep + 1, target.label);
                    if self.started.elapsed() > self.opts.budget {
                        eprintln!("skip {what}: over the {:?} budget", self.opts.budget);
                        self.results.notes.push(format!("{what}: skipped, over the time budget"));
                        continue;
                    }
                    eprintln!("run  {what}");
                    let t0 = Instant::now();
                    let collected = self.reaper.orphans_reaped();
                    let result = self.run_case(&case, &target).await;
                    // What exited before the run ended is a zombie by now:
                    // counted for this run, not for the next.
                    self.reaper.drain();
                    self.results.record_escaped(
                        format!("{} [{label}] {}", case.scenario(), target.label),
                        self.reaper.orphans_reaped() - collected,
                    );
                    match result {
                        Ok(measures) => {
                            self.results.record(case.scenario(), &label, &target.label, &measures)
                        }
                        Err(e) => {
                            eprintln!("FAIL {what}: {e:#}");
                            self.results.notes.push(format!("{what}: failed: {e:#}"));
                        }
                    }
                    for (series, values) in self.samples.take() {
                        let run = what.clone();
                        self.results.samples.push(crate::stats::Samples { run, series, values });
                    }
                    for w in self.warnings.take() {
                        eprintln!("WARN {what}: {w}");
                        self.results.notes.push(format!("{what}: warning: {w}"));
                    }
                    eprintln!("     {:.1} s", t0.elapsed().as_secs_f64());
                }
            }
        }
    }

    async fn run_case(&self, case: &Case, target: &Target) -> anyhow::Result<Vec<Measure>> {
        let mut run = Run::new(target, &self.reaper, &self.pacing)?;
        let measures = match *case {
            Case::Spawn { n, startsecs } => self.s1(&mut run, n, startsecs).await?,
            Case::Memory { n } => self.s2(&mut run, n).await?,
            Case::Idle { n } => self.s3(&mut run, n).await?,
            Case::Status { n } => self.s4(&mut run, n).await?,
            Case::Restart { others } => self.s5(&mut run, others).await?,
            Case::Logs { rotate } => self.s6(&mut run, rotate).await?,
            Case::Update { n } => self.s7(&mut run, n).await?,
            Case::CrashLoop { n } => self.s8(&mut run, n).await?,
            Case::Scale { n } => self.s9(&mut run, n).await?,
            Case::Upgrade { n } => self.s10(&mut run, n).await?,
        };
        // S1 and S9 measured the shutdown themselves; the others still need
        // one, which also checks that no program outlives the daemon.
        if run.daemon.as_mut().is_some_and(|d| d.alive()) {
            run.shutdown().await?;
        }
        Ok(measures)
    }

    /// `n` programs `sleep 100000` with the given startsecs.
    fn sleepers(&self, run: &mut Run, range: std::ops::Range<usize>, startsecs: Option<u32>) {
        for name in names(range) {
            let mut p = run.spec.program(&name, "sleep 100000");
            p.startsecs = startsecs;
            run.spec.programs.push(p);
        }
    }

    /// Launches with the current spec and waits until every program runs.
    async fn launch_running(&self, run: &mut Run, n: usize) -> anyhow::Result<Seen> {
        run.write_config()?;
        run.launch()?;
        run.wait_running(n, self.opts.spawn_timeout, is_sleeper).await
    }

    async fn settle(&self) {
        tokio::time::sleep(self.opts.settle).await;
    }

    /// Reference floor for S1 and S9: this process spawns `n` of the daemons'
    /// command (`sleep 100000`) with std's `Command` (glibc's `posix_spawn`, a
    /// vfork-style clone), stdout and stderr piped and the read ends kept open
    /// as a supervisor keeps them, from `threads` threads at once (each back to
    /// back, a share of `n`). No daemon, no RPC: what `n` spawns cost on this
    /// machine with one spawner, or with one per core. Then the children are
    /// sent SIGTERM one after the other and reaped: the floor of a shutdown.
    /// Both in seconds.
    async fn spawn_reference(&self, n: usize, threads: usize) -> anyhow::Result<(f64, f64)> {
        let t0 = Instant::now();
        let shares: Vec<_> = (0..threads)
            .map(|index| {
                let count = n / threads + usize::from(index < n % threads);
                let reaper = self.reaper.clone();
                tokio::task::spawn_blocking(move || spawn_sleepers(&reaper, count))
            })
            .collect();
        let mut children = Vec::with_capacity(n);
        let mut failure = None;
        for share in shares {
            let (spawned, error) = share.await?;
            children.extend(spawned);
            failure = failure.or(error);
        }
        let elapsed = t0.elapsed();
        let stopping = Instant::now();
        for child in &children {
            self.reaper.signal_live(child.pid, nix::sys::signal::Signal::SIGTERM);
        }
        for child in children {
            let _ = child.exit.await;
        }
        let stopped = stopping.elapsed();
        match failure {
            Some(error) => Err(error).context("spawning the reference sleepers"),
            None => Ok((secs(elapsed), secs(stopped))),
        }
    }

    /// S9's second shutdown floor ([`crate::stopfloor`]): `n` sleepers with
    /// a supervisor's three pipes each, stopped, read to end of file, reaped
    /// and a line logged for each, in seconds. Its log goes in the run's
    /// directory.
    async fn captured_stop_reference(&self, run: &Run, n: usize) -> anyhow::Result<f64> {
        let reaper = self.reaper.clone();
        let captured =
            tokio::task::spawn_blocking(move || crate::stopfloor::Captured::spawn(&reaper, n))
                .await??;
        let log = run.dir().join("reference-stops.log");
        let stopped = captured.stop(&log, self.opts.spawn_timeout).await?;
        Ok(secs(stopped))
    }

    async fn s1(&self, run: &mut Run, n: usize, startsecs: u32) -> anyhow::Result<Vec<Measure>> {
        let (floor, _) = self.spawn_reference(n, 1).await?;
        let (floor_two, _) = self.spawn_reference(n, 2).await?;
        self.sleepers(run, 0..n, Some(startsecs));
        let execs = exec_log("S1");
        let seen = self.launch_running(run, n).await?;
        let cpu = run.supervisor_cpu()?;
        let pids = run.program_pids(is_sleeper)?;
        let programs = procfs::run_time_seconds(&pids);
        let launched = run.daemon()?.launched;
        let last_exec = last_exec(launched, execs, &pids, n);
        let shutdown = run.shutdown().await?;
        let mut measures = vec![
            Measure::lower(
                "launch to all RUNNING seen (end of ctl call)",
                "s",
                secs(seen.ended - launched),
            ),
            Measure::lower("same, start of that ctl call", "s", secs(seen.started - launched)),
        ];
        measures.extend(last_exec);
        measures.extend([
            Measure::lower("daemon CPU until then", "s", cpu),
            Measure::lower("shutdown (SIGTERM to daemon exit)", "s", secs(shutdown)),
            spawn_floor(floor),
            spawn_floor_two(floor_two),
            programs_floor(programs),
        ]);
        Ok(measures)
    }

    async fn s2(&self, run: &mut Run, n: usize) -> anyhow::Result<Vec<Measure>> {
        self.sleepers(run, 0..n, Some(0));
        self.launch_running(run, n).await?;
        self.settle().await;
        run.check_daemon()?;
        let memory = Memory::read(&run.supervisor_pids()?)?;
        Ok(vec![
            Measure::lower("VmRSS, idle", "MiB", mib(memory.rss_kib)),
            Measure::lower("VmHWM (peak)", "MiB", mib(memory.hwm_kib)),
            Measure::lower(
                "PSS, idle (shared pages split among their users)",
                "MiB",
                mib(memory.pss_kib),
            ),
            Measure::count("supervisor processes", "count", memory.processes as f64),
        ])
    }

    async fn s3(&self, run: &mut Run, n: usize) -> anyhow::Result<Vec<Measure>> {
        self.sleepers(run, 0..n, Some(0));
        self.launch_running(run, n).await?;
        self.settle().await;
        run.check_daemon()?;
        let pids = run.supervisor_pids()?;
        let cpu0 = cpu_of(&pids)?;
        let ctx0 = ctxt_switches_of(&pids)?;
        let t0 = Instant::now();
        tokio::time::sleep(self.opts.idle).await;
        let cpu1 = cpu_of(&pids)?;
        let ctx1 = ctxt_switches_of(&pids)?;
        let window = secs(t0.elapsed());
        run.check_daemon()?;
        Ok(vec![
            Measure::lower("daemon CPU over the window", "s", cpu1 - cpu0),
            Measure::lower("share of one core", "%", 100.0 * (cpu1 - cpu0) / window),
            Measure::lower(
                "wake-ups (context switches, all threads) per second",
                "1/s",
                ctx1.saturating_sub(ctx0) as f64 / window,
            ),
        ])
    }

    async fn s4(&self, run: &mut Run, n: usize) -> anyhow::Result<Vec<Measure>> {
        self.sleepers(run, 0..n, Some(0));
        self.launch_running(run, n).await?;
        self.settle().await;
        let first = names(0..1).remove(0);
        let (mut status, mut pid, mut all, mut state, mut size) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
        let mut tarpc = Vec::new();
        let mut rpc_error = None;
        for _ in 0..self.opts.s4_calls {
            let out = run.ctl("status", None).await?;
            let lines = crate::status::parse_status(&out.stdout);
            ensure!(lines.len() == n, "status listed {} of {n} programs", lines.len());
            status.push(ms(out.elapsed()));
            let out = run.ctl("pid {name}", Some(&first)).await?;
            ensure!(
                crate::status::parse_pid(&out.stdout).is_some(),
                "pid {first} printed {:?}",
                out.stdout.trim()
            );
            pid.push(ms(out.elapsed()));
            if run.target.is_vigil() {
                tarpc.push(tarpc_all_process_info(run, n).await?);
            }
            if !self.opts.rpc_path.is_empty() && rpc_error.is_none() {
                match self.rpc_pair(run).await {
                    Ok((a, b, bytes)) => {
                        all.push(a);
                        state.push(b);
                        size = bytes;
                    }
                    Err(e) => rpc_error = Some(e),
                }
            }
        }
        let mut samples = self.samples.borrow_mut();
        samples.push(("ctl status ms".into(), status.clone()));
        samples.push(("ctl pid ms".into(), pid.clone()));
        samples.push(("getAllProcessInfo ms".into(), all.clone()));
        samples.push(("getState ms".into(), state.clone()));
        if !tarpc.is_empty() {
            samples.push(("tarpc all_process_info ms".into(), tarpc.clone()));
        }
        drop(samples);
        if let Some(e) = rpc_error {
            self.warnings.borrow_mut().push(format!("no XML-RPC figures: {e:#}"));
        }
        let mut m = vec![
            Measure::lower("`ctl status`", "ms", median(&status)),
            Measure::lower("`ctl pid p000` (CLI floor)", "ms", median(&pid)),
        ];
        if !tarpc.is_empty() {
            m.push(Measure::lower(
                "tarpc all_process_info, fresh unix-socket connection (vigild only)",
                "ms",
                median(&tarpc),
            ));
        }
        if !all.is_empty() {
            m.push(Measure::lower(
                "XML-RPC getAllProcessInfo, fresh unix-socket connection",
                "ms",
                median(&all),
            ));
            m.push(Measure::count("its response size", "KB", size as f64 / 1000.0));
            m.push(Measure::lower("XML-RPC getState (RPC floor)", "ms", median(&state)));
        }
        Ok(m)
    }

    /// One `getAllProcessInfo` and one `getState`, each on a fresh
    /// connection: their times in ms and the first answer's size.
    async fn rpc_pair(&self, run: &Run) -> anyhow::Result<(f64, f64, usize)> {
        let (sock, path) = (&run.vars.sock, &self.opts.rpc_path);
        let timeout = self.pacing.ctl_timeout;
        let all = xmlrpc::call(sock, path, "supervisor.getAllProcessInfo", timeout).await?;
        let state = xmlrpc::call(sock, path, "supervisor.getState", timeout).await?;
        Ok((ms(all.elapsed), ms(state.elapsed), all.body_bytes))
    }

    /// The one program that runs `sleep 100000`, a child of `parent`.
    fn sleeper_child(parent: i32) -> anyhow::Result<(i32, u64)> {
        let kids: Vec<i32> = procfs::children(parent)
            .into_iter()
            .filter(|&p| is_sleeper(&procfs::cmdline(p)))
            .collect();
        let [pid] = kids[..] else {
            bail!("expected one program child of pid {parent}, found {kids:?}")
        };
        let stat = procfs::stat(pid).context("program vanished")?;
        ensure!(stat.ppid == parent, "pid {pid} is not a child of pid {parent}");
        Ok((pid, stat.start_time))
    }

    async fn s5(&self, run: &mut Run, others: usize) -> anyhow::Result<Vec<Measure>> {
        let mut p = run.spec.program("p000", "sleep 100000");
        p.autorestart = Some(true);
        p.startsecs = Some(0);
        run.spec.programs.push(p);
        // The others run a command the kill never picks (see `is_sleeper`).
        for index in 1..=others {
            let mut other = run.spec.program(&format!("p{index:03}"), OTHER_SLEEPER);
            other.autorestart = Some(true);
            other.startsecs = Some(0);
            run.spec.programs.push(other);
        }
        run.write_config()?;
        run.launch()?;
        run.wait_running(others + 1, self.opts.spawn_timeout, is_any_sleeper).await?;
        let mut last_spawn_seen = Instant::now();
        let only = names(0..1);
        // The daemon, or for s6 the service's s6-supervise (the one whose
        // child is the sleeper).
        let parents: Vec<i32> = run
            .program_parents()?
            .into_iter()
            .filter(|&p| procfs::children(p).iter().any(|&c| is_sleeper(&procfs::cmdline(c))))
            .collect();
        let [parent] = parents[..] else {
            bail!("expected one process supervising the program, found {parents:?}")
        };
        // s6 restarts at once only a service that has been up for a second;
        // each kill waits for that, so the figure is its immediate restart.
        let min_up = if run.target.model == Model::S6 {
            crate::s6::MIN_RESPAWN_INTERVAL
        } else {
            Duration::ZERO
        };
        // The kernel's exec events when this process may read them; else
        // `/proc` polled from a thread.
        let mut watch = match crate::execwatch::ExecWatch::open() {
            Ok(watch) => Some(watch),
            Err(error) => {
                eprintln!("S5: polling /proc instead of the kernel's exec events: {error:#}");
                None
            }
        };
        let by_events = watch.is_some();
        let mut latencies = Vec::new();
        for _ in 0..self.opts.s5_kills {
            // RUNNING first (a kill while STARTING would count as a failed
            // start), then a pause so that status traffic is not what wakes
            // the daemon when the kill lands.
            if run.target.ctl.is_some() {
                run.wait_all(&only, "RUNNING", self.opts.restart_timeout).await?;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !min_up.is_zero() {
                let margin = Duration::from_millis(100);
                tokio::time::sleep((min_up + margin).saturating_sub(last_spawn_seen.elapsed()))
                    .await;
            }
            let (old, old_start) = Self::sleeper_child(parent)?;
            ensure!(procfs::alive_same(old, old_start), "program {old} exited on its own");
            // Only a pid not seen before can be the new child: the others' command
            // lines are not read again on every poll (with 500 of them that took
            // milliseconds).
            let known: HashSet<i32> = procfs::children(parent).into_iter().collect();
            if let Some(watch) = watch.as_mut() {
                let timeout = self.opts.restart_timeout;
                latencies.push(kill_to_exec(watch, parent, old, &known, timeout)?);
                last_spawn_seen = Instant::now();
                continue;
            }
            let t0 = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(old),
                nix::sys::signal::Signal::SIGKILL,
            )
            .context("kill -9 of the program")?;
            // Polled from a thread of its own every 50 us: a runtime's timer
            // (1 ms ticks) would measure its own granularity.
            let timeout = self.opts.restart_timeout;
            let latency = tokio::task::spawn_blocking(move || {
                loop {
                    let respawned = procfs::children(parent)
                        .into_iter()
                        .any(|p| !known.contains(&p) && is_sleeper(&procfs::cmdline(p)));
                    if respawned {
                        return Some(t0.elapsed());
                    }
                    if t0.elapsed() > timeout {
                        return None;
                    }
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "a measurement poll, not lifecycle timing"
                    )]
                    std::thread::sleep(Duration::from_micros(50));
                }
            })
            .await?;
            let Some(latency) = latency else {
                bail!("no new child within {timeout:?} of kill -9")
            };
            latencies.push(ms(latency));
            last_spawn_seen = Instant::now();
        }
        run.wait_running(1, self.opts.restart_timeout, is_sleeper).await?;
        let sample = if others == 0 {
            "kill -9 to new child ms".to_owned()
        } else {
            format!("kill -9 to new child, {others} others, ms")
        };
        self.samples.borrow_mut().push((sample, latencies.clone()));
        let worst = latencies.iter().copied().fold(f64::NAN, f64::max);
        let how = if by_events {
            "kill -9 to the new child's exec (the kernel's time stamp), no ctl traffic"
        } else {
            "kill -9 to new child in /proc, polled every 50 us, no ctl traffic"
        };
        let mut measures = vec![
            Measure::lower(how, "ms", median(&latencies)),
            Measure::lower("slowest of those kills", "ms", worst),
        ];
        // Measured only as the kernel's exec events measure the target: a
        // polled floor would carry the poll's own delay.
        if let Some(watch) = watch.as_mut() {
            measures.push(respawn_floor(self.respawn_reference(watch).await?));
        }
        Ok(measures)
    }

    /// S5's reference: the same kills of a `sleep 100000` whose parent does
    /// nothing but wait for it and spawn it again (`vigil-bench respawn`), no
    /// daemon. What a respawn costs on this machine: the child's exit, the
    /// waiting parent's wake-up, a spawn and the new child's `execve` up to
    /// the kernel's exec event. Median in ms.
    async fn respawn_reference(
        &self,
        watch: &mut crate::execwatch::ExecWatch,
    ) -> anyhow::Result<f64> {
        let mut command = Command::new(&self.opts.exe);
        command.arg("respawn").stdin(Stdio::piped()).stdout(Stdio::null());
        let mut helper =
            self.reaper.spawn(&mut command).context("starting the respawn reference")?;
        // Closing its stdin stops it: it kills its `sleep`, reaps it and exits.
        let stop = helper.child.stdin.take();
        let measured = self.respawn_kills(helper.pid, watch).await;
        drop(stop);
        if tokio::time::timeout(self.opts.restart_timeout, &mut helper.exit).await.is_err() {
            self.reaper.signal_live(helper.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = helper.exit.await;
            bail!("the respawn reference did not stop within {:?}", self.opts.restart_timeout);
        }
        measured
    }

    async fn respawn_kills(
        &self,
        parent: i32,
        watch: &mut crate::execwatch::ExecWatch,
    ) -> anyhow::Result<f64> {
        let timeout = self.opts.restart_timeout;
        let mut latencies = Vec::new();
        for _ in 0..self.opts.s5_kills {
            // Its `sleep` has exec'd (the first, or the last kill's respawn).
            let waiting = Instant::now();
            let (old, old_start) = loop {
                match Self::sleeper_child(parent) {
                    Ok(found) => break found,
                    Err(error) if waiting.elapsed() > timeout => return Err(error),
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            };
            // The same pause as before each kill of a supervisor's program.
            tokio::time::sleep(Duration::from_millis(50)).await;
            ensure!(procfs::alive_same(old, old_start), "the reference's {old} exited on its own");
            let known: HashSet<i32> = procfs::children(parent).into_iter().collect();
            latencies.push(kill_to_exec(watch, parent, old, &known, timeout)?);
        }
        Ok(median(&latencies))
    }

    /// Reference rate: the generator piped to `cat > file`, no daemon.
    async fn cat_reference(&self, run: &Run) -> anyhow::Result<f64> {
        let bytes = self.opts.s6_bytes;
        let out_path = run.dir().join("cat.out");
        let t0 = Instant::now();
        let mut gen_cmd = Command::new(&self.opts.exe);
        gen_cmd
            .arg("gen")
            .arg(bytes.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut generator = self.reaper.spawn(&mut gen_cmd).context("starting the generator")?;
        let pipe = generator.child.stdout.take().expect("stdout was piped");
        let mut cat_cmd = Command::new("cat");
        cat_cmd.stdin(Stdio::from(pipe)).stdout(std::fs::File::create(&out_path)?);
        let cat = self.reaper.spawn(&mut cat_cmd);
        let cat = match cat {
            Ok(c) => c,
            Err(e) => {
                self.reaper.signal_live(generator.pid, nix::sys::signal::Signal::SIGKILL);
                return Err(e).context("starting cat");
            }
        };
        // `cat_cmd` holds the parent's copy of the pipe; drop it so cat sees
        // end of file when the generator exits.
        drop(cat_cmd);
        let both = async {
            let a = (&mut generator.exit).await;
            let b = cat.exit.await;
            (a, b)
        };
        let (a, b) = match tokio::time::timeout(self.opts.log_timeout, both).await {
            Ok(r) => r,
            Err(_) => {
                self.reaper.signal_live(generator.pid, nix::sys::signal::Signal::SIGKILL);
                self.reaper.signal_live(cat.pid, nix::sys::signal::Signal::SIGKILL);
                bail!("generator | cat did not finish within {:?}", self.opts.log_timeout);
            }
        };
        let elapsed = t0.elapsed();
        ensure!(
            a.is_ok_and(|e| e.success()) && b.is_ok_and(|e| e.success()),
            "generator | cat failed"
        );
        let len = std::fs::metadata(&out_path)?.len();
        std::fs::remove_file(&out_path)?;
        ensure!(len == bytes, "cat wrote {len} of {bytes} bytes");
        Ok(bytes as f64 / 1e6 / secs(elapsed))
    }

    async fn s6(&self, run: &mut Run, rotate: bool) -> anyhow::Result<Vec<Measure>> {
        let bytes = self.opts.s6_bytes;
        let cat_rate = self.cat_reference(run).await?;
        let command = format!("{} gen {bytes}", shell_word(&self.opts.exe));
        let mut p: Program = run.spec.program("gen", &command);
        p.autostart = Some(false);
        p.autorestart = Some(false);
        p.startsecs = Some(0);
        p.stdout_logfile_maxbytes = Some(if rotate { "10MB" } else { "1GB" }.into());
        p.stdout_logfile_backups = Some(if rotate { 5 } else { 0 });
        let format = self.opts.s6_format;
        if format != logs::Format::Raw {
            p.stdout_logfile_format = Some(format.key().into());
        }
        let live = p.stdout_logfile.clone();
        let err_log = p.stderr_logfile.clone();
        run.spec.programs.push(p);
        run.write_config()?;
        run.launch()?;
        let gen_name = ["gen".to_owned()];
        run.wait_all(&gen_name, "STOPPED", self.opts.spawn_timeout).await?;
        let cpu0 = run.daemon()?.cpu();
        let t_start = Instant::now();
        let out = run.ctl("start {name}", Some("gen")).await?;
        if !out.exit.success() {
            // A generator that finishes before the daemon calls it RUNNING
            // makes supervisorctl report a failed start although every byte
            // was captured; the log check below is what decides.
            let said = out.stdout.trim().to_owned();
            self.warnings.borrow_mut().push(format!("ctl start gen: {}: {said}", out.exit));
        }
        let done = loop {
            let complete = match format {
                logs::Format::Raw => {
                    logs::ends_with_last_line(&live, bytes)
                        && (rotate || std::fs::metadata(&live).is_ok_and(|m| m.len() == bytes))
                }
                _ => logs::ends_with_last_record(&live, bytes, format),
            };
            if complete {
                break crate::monotonic_ns();
            }
            if t_start.elapsed() > self.opts.log_timeout {
                bail!("log not complete within {:?}", self.opts.log_timeout);
            }
            run.check_daemon()?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let t_done = t_start.elapsed();
        let cpu = run.daemon()?.cpu() - cpu0;
        let gen_start = read_gen_start(&err_log, self.opts.spawn_timeout).await?;
        let rate = bytes as f64 / 1e6 / (done.saturating_sub(gen_start) as f64 / 1e9);
        let files = if rotate { logs::rotated_files(&live, 5) } else { vec![live.clone()] };
        let verified = match format {
            logs::Format::Raw => logs::verify(&files, bytes, !rotate)?,
            _ => logs::verify_formatted(&live, bytes, format)?,
        };
        Ok(vec![
            // The same reference for every target: no ratio, only context.
            Measure {
                name: "reference: generator | cat > file, same run".into(),
                unit: "MB/s",
                better: crate::stats::Better::Neither,
                value: cat_rate,
            },
            Measure::lower("`ctl start` to log complete", "s", secs(t_done)),
            Measure::higher("throughput (generator start to log complete)", "MB/s", rate),
            Measure::higher("throughput relative to cat", "x", rate / cat_rate),
            Measure::lower("daemon CPU during", "s", cpu),
            Measure::count(
                "lines verified in the kept log, gapless",
                "lines",
                verified.complete_lines as f64,
            ),
        ])
    }

    async fn s7(&self, run: &mut Run, n: usize) -> anyhow::Result<Vec<Measure>> {
        let k = n / 10;
        self.sleepers(run, 0..n, Some(0));
        run.write_config()?;
        run.launch()?;
        let (_, before) = run.wait_all(&names(0..n), "RUNNING", self.opts.spawn_timeout).await?;
        let pid_of =
            |t: &BTreeMap<String, ProcessLine>, name: &str| t.get(name).and_then(|l| l.pid);
        let start_of = |pid: Option<i32>| pid.and_then(procfs::stat).map(|s| s.start_time);
        let all = names(0..n);
        let (changed, untouched, removed) = (&all[0], &all[1..n - k], &all[n - k..]);
        let removed_procs: Vec<(i32, u64)> = removed
            .iter()
            .filter_map(|nm| pid_of(&before, nm))
            .filter_map(|p| start_of(Some(p)).map(|s| (p, s)))
            .collect();
        ensure!(removed_procs.len() == k, "could not record the pids of the programs to remove");
        // The new config: one changed, the last k removed, k added.
        run.spec.programs.truncate(n - k);
        run.spec.programs[0].command = "sleep 100001".into();
        self.sleepers(run, n..n + k, Some(0));
        run.write_config()?;
        let cpu0 = run.daemon()?.cpu();
        let out = run.ctl("update", None).await?;
        let cpu = run.daemon()?.cpu() - cpu0;
        ensure!(out.exit.success(), "ctl update: {} {}", out.exit, out.stdout.trim());
        let mut wanted: Vec<String> = all[..n - k].to_vec();
        wanted.extend(names(n..n + k));
        let (seen, after) = run.wait_all(&wanted, "RUNNING", self.opts.spawn_timeout).await?;
        let kept = untouched.iter().filter(|nm| pid_of(&before, nm) == pid_of(&after, nm)).count();
        ensure!(
            kept == untouched.len(),
            "only {kept} of {} untouched pids unchanged",
            untouched.len()
        );
        ensure!(
            pid_of(&before, changed) != pid_of(&after, changed),
            "the changed program kept its pid"
        );
        if let Some(name) = removed.iter().find(|nm| after.contains_key(*nm)) {
            bail!("removed program {name} is still in status");
        }
        if let Some((pid, _)) = removed_procs.iter().find(|(p, s)| procfs::alive_same(*p, *s)) {
            bail!("removed program pid {pid} is still alive");
        }
        Ok(vec![
            Measure::lower("`ctl update` wall time", "s", secs(out.elapsed())),
            Measure::lower("update start to all RUNNING seen", "s", secs(seen.ended - out.started)),
            Measure::lower("daemon CPU during `update`", "s", cpu),
            Measure::count("untouched programs with unchanged pid", "count", kept as f64),
        ])
    }

    async fn s8(&self, run: &mut Run, n: usize) -> anyhow::Result<Vec<Measure>> {
        let command = format!("{} exit 1", shell_word(&self.opts.exe));
        for name in names(0..n) {
            let mut p = run.spec.program(&name, &command);
            p.autorestart = Some(true);
            p.startretries = Some(3);
            run.spec.programs.push(p);
        }
        run.write_config()?;
        run.launch()?;
        let (seen, _) = run.wait_all(&names(0..n), "FATAL", self.opts.spawn_timeout).await?;
        let daemon = run.daemon()?;
        let cpu = daemon.cpu();
        let launched = daemon.launched;
        Ok(vec![
            Measure::lower(
                "launch to all FATAL seen (end of ctl call)",
                "s",
                secs(seen.ended - launched),
            ),
            Measure::lower("same, start of that ctl call", "s", secs(seen.started - launched)),
            Measure::lower("daemon CPU since launch (includes start-up)", "s", cpu),
        ])
    }

    async fn s9(&self, run: &mut Run, n: usize) -> anyhow::Result<Vec<Measure>> {
        let (floor, stop_floor) = self.spawn_reference(n, 1).await?;
        let (floor_two, _) = self.spawn_reference(n, 2).await?;
        let captured_stop_floor = self.captured_stop_reference(run, n).await?;
        self.sleepers(run, 0..n, Some(0));
        let execs = exec_log("S9");
        let seen = self.launch_running(run, n).await?;
        let launched = run.daemon()?.launched;
        let cpu = run.supervisor_cpu()?;
        let pids = run.program_pids(is_sleeper)?;
        let programs = procfs::run_time_seconds(&pids);
        let last_exec = last_exec(launched, execs, &pids, n);
        self.settle().await;
        let mut status = Vec::new();
        for _ in 0..3 {
            if run.target.ctl.is_none() {
                break;
            }
            let out = run.ctl("status", None).await?;
            let listed = crate::status::parse_status(&out.stdout).len();
            ensure!(listed == n, "status listed {listed} of {n} programs");
            status.push(ms(out.elapsed()));
        }
        // vigild's Prometheus endpoint; other daemons have none.
        let mut scrapes = Vec::new();
        if run.target.label == "vigil" {
            for _ in 0..3 {
                let (timing, body) =
                    crate::xmlrpc::get(&run.vars.sock, "/metrics", Duration::from_secs(30)).await?;
                let up = body.lines().filter(|l| l.starts_with("vigil_process_up{")).count();
                ensure!(up == n, "/metrics listed {up} of {n} programs");
                scrapes.push(ms(timing.elapsed));
            }
        }
        let memory = Memory::read(&run.supervisor_pids()?)?;
        let shutdown = run.shutdown().await?;
        let scrape = (!scrapes.is_empty())
            .then(|| Measure::lower("`/metrics` scrape (median of 3)", "ms", median(&scrapes)));
        let status = (!status.is_empty())
            .then(|| Measure::lower("`ctl status` (median of 3)", "ms", median(&status)));
        Ok([Measure::lower(
            "launch to all RUNNING seen (end of ctl call)",
            "s",
            secs(seen.ended - launched),
        )]
        .into_iter()
        .chain(last_exec)
        .chain([
            Measure::lower("daemon CPU until then", "s", cpu),
            Measure::lower("VmRSS, idle", "MiB", mib(memory.rss_kib)),
            Measure::lower(
                "PSS, idle (shared pages split among their users)",
                "MiB",
                mib(memory.pss_kib),
            ),
            Measure::lower("shutdown (SIGTERM to daemon exit)", "s", secs(shutdown)),
            spawn_floor(floor),
            spawn_floor_two(floor_two),
            programs_floor(programs),
            stop_floor_measure(stop_floor),
            captured_stop_floor_measure(captured_stop_floor),
        ])
        .chain(status)
        .chain(scrape)
        .collect())
    }
}

impl Bench {
    /// S10: `vigilctl upgrade` (pre-flight, handover, `execve`, the new image's
    /// first answer) with `n` sleepers running, twice. During the first, two
    /// clients call over and over, each call on a fresh connection:
    /// `daemon_info` and `process_info` of one program; their slowest answer
    /// is the read pause. During the second, one client calls `start` of the
    /// last running program, which its process actor answers
    /// `ALREADY_STARTED` (a call that needs its actor back); its slowest
    /// answer is the write pause. Apart,
    /// because clients looping reads that the new image answers at once would
    /// take the CPU the tree build needs on a small machine. Then every
    /// program must have its old pid.
    async fn s10(&self, run: &mut Run, n: usize) -> anyhow::Result<Vec<Measure>> {
        self.sleepers(run, 0..n, Some(0));
        self.launch_running(run, n).await?;
        self.settle().await;
        let before = crate::status::parse_status(&run.ctl("status", None).await?.stdout);
        ensure!(before.len() == n, "status listed {} of {n} programs", before.len());
        let program = before.keys().next().cloned().unwrap_or_default();
        // The last program for the write: the one a tree resumed in config
        // order would bring back last.
        let last = before.keys().next_back().cloned().unwrap_or_default();
        let (upgrade, reads) =
            upgrade_probed(run, &program, &[Probe::DaemonInfo, Probe::Status]).await?;
        let (_, writes) = upgrade_probed(run, &last, &[Probe::Start]).await?;
        let [info, status, start] = [reads[0], reads[1], writes[0]];
        let after = crate::status::parse_status(&run.ctl("status", None).await?.stdout);
        let restarted = before
            .iter()
            .filter(|(name, line)| after.get(*name).map(|a| a.pid) != Some(line.pid))
            .count();
        Ok(vec![
            Measure::lower("`ctl upgrade` (check, handover, new image answers)", "ms", ms(upgrade)),
            Measure::lower("read pause: longest `daemon_info`", "ms", ms(info.0)),
            Measure::lower("read pause: longest `process_info`", "ms", ms(status.0)),
            Measure::lower("write pause: longest `start` (ALREADY_STARTED)", "ms", ms(start.0)),
            Measure::count(
                "control calls answered while measuring",
                "",
                f64::from(info.1 + status.1 + start.1),
            ),
            Measure::lower("failed control calls", "", f64::from(info.2 + status.2 + start.2)),
            Measure::lower("programs restarted (pid changed)", "", restarted as f64),
        ])
    }
}

/// One `vigilctl upgrade` while a client per probe calls it in a loop;
/// `ctl upgrade`'s time and each client's (longest call, calls, failures).
/// The clients go on until the new tree has answered a `start`.
async fn upgrade_probed(
    run: &mut Run,
    program: &str,
    probes: &[Probe],
) -> anyhow::Result<(Duration, Vec<(Duration, u32, u32)>)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let url = format!("unix://{}", run.vars.sock.display());
    let stop = Arc::new(AtomicBool::new(false));
    let probers: Vec<_> = probes
        .iter()
        .map(|&call| {
            let (stop, url, program) = (Arc::clone(&stop), url.clone(), program.to_owned());
            tokio::spawn(async move {
                let (mut longest, mut calls, mut failures) = (Duration::ZERO, 0u32, 0u32);
                while !stop.load(Ordering::SeqCst) {
                    let t0 = Instant::now();
                    if call.run(&url, &program).await.is_err() {
                        failures += 1;
                    }
                    longest = longest.max(t0.elapsed());
                    calls += 1;
                }
                (longest, calls, failures)
            })
        })
        .collect();
    // Some answers from the old image first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = run.ctl("upgrade", None).await?;
    ensure!(out.stdout.contains("Upgraded: vigild"), "upgrade: {}{}", out.stdout, out.stderr);
    let t0 = Instant::now();
    while Probe::Start.run(&url, program).await.is_err() && t0.elapsed() < Duration::from_secs(30) {
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut results = Vec::new();
    for prober in probers {
        results.push(prober.await.context("a probing client")?);
    }
    Ok((out.elapsed(), results))
}

/// One S10 probing call, on a fresh connection, handshake included.
#[derive(Clone, Copy)]
enum Probe {
    /// `daemon_info`.
    DaemonInfo,
    /// `process_info` of the program.
    Status,
    /// `start` of the (running) program, which must answer `ALREADY_STARTED`.
    Start,
}

impl Probe {
    async fn run(self, url: &str, program: &str) -> anyhow::Result<()> {
        let client = vigil_rpc::connect(url, None).await.context("tarpc connect")?;
        let ctx = || vigil_rpc::context_with_timeout(Duration::from_secs(30));
        match self {
            Probe::DaemonInfo => {
                vigil_rpc::flatten(client.daemon_info(ctx()).await).context("daemon_info")?;
            }
            Probe::Status => {
                let info = vigil_rpc::flatten(client.process_info(ctx(), program.to_owned()).await)
                    .context("process_info")?;
                ensure!(info.pid != 0, "process_info: {program} has no pid");
            }
            Probe::Start => {
                let spec = vigil_rpc::NameSpec::parse(program);
                let results = vigil_rpc::flatten(client.start(ctx(), vec![spec], false).await)
                    .context("start")?;
                ensure!(
                    matches!(
                        results.as_slice(),
                        [vigil_rpc::ProcessResult {
                            error: Some(vigil_rpc::ControlError::AlreadyStarted(_)),
                            ..
                        }]
                    ),
                    "start {program}: {results:?}"
                );
            }
        }
        Ok(())
    }
}

/// One `all_process_info` over Vigil's own control protocol, connection and
/// handshake included, as an ops script linking `vigil-rpc` makes it; in ms.
async fn tarpc_all_process_info(run: &Run, n: usize) -> anyhow::Result<f64> {
    let url = format!("unix://{}", run.vars.sock.display());
    let t0 = Instant::now();
    let client = vigil_rpc::connect(&url, None).await.context("tarpc connect")?;
    let all = vigil_rpc::flatten(
        client.all_process_info(vigil_rpc::context_with_timeout(Duration::from_secs(30))).await,
    )
    .context("tarpc all_process_info")?;
    let elapsed = t0.elapsed();
    ensure!(all.len() == n, "all_process_info listed {} of {n} processes", all.len());
    Ok(ms(elapsed))
}

/// Memory of the supervisor's processes, summed (one process for vigild,
/// supervisord and Horust; s6-svscan and every s6-supervise for s6).
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
    pss_kib: u64,
    processes: usize,
}

impl Memory {
    fn read(pids: &[i32]) -> anyhow::Result<Memory> {
        let mut m = Memory { rss_kib: 0, hwm_kib: 0, pss_kib: 0, processes: pids.len() };
        for &pid in pids {
            let status = procfs::status(pid).with_context(|| format!("pid {pid} gone"))?;
            m.rss_kib += status.vm_rss_kib;
            m.hwm_kib += status.vm_hwm_kib;
            m.pss_kib += procfs::pss_kib(pid).with_context(|| format!("pid {pid} gone"))?;
        }
        Ok(m)
    }
}

/// CPU seconds of `pids`, summed.
fn cpu_of(pids: &[i32]) -> anyhow::Result<f64> {
    pids.iter().map(|&p| procfs::cpu_seconds(p).with_context(|| format!("pid {p} gone"))).sum()
}

/// Context switches of every thread of `pids`, summed.
fn ctxt_switches_of(pids: &[i32]) -> anyhow::Result<u64> {
    pids.iter()
        .map(|&p| procfs::all_threads_ctxt_switches(p).with_context(|| format!("pid {p} gone")))
        .sum()
}

/// Spawns `count` reference sleepers back to back (see `spawn_reference`);
/// stops at the first failure.
fn spawn_sleepers(
    reaper: &crate::reaper::Reaper,
    count: usize,
) -> (Vec<crate::reaper::Spawned>, Option<std::io::Error>) {
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        let mut command = Command::new("sleep");
        command.arg("100000").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        match reaper.spawn(&mut command) {
            Ok(child) => children.push(child),
            Err(error) => return (children, Some(error)),
        }
    }
    (children, None)
}

/// The same reference for every target (see `spawn_reference`): context, no ratio.
fn spawn_floor(seconds: f64) -> Measure {
    Measure {
        name: "reference: the same N spawned back to back by one process, no daemon".into(),
        unit: "s",
        better: crate::stats::Better::Neither,
        value: seconds,
    }
}

/// The shutdown reference (see `spawn_reference`): context, no ratio.
fn stop_floor_measure(seconds: f64) -> Measure {
    Measure {
        name: "reference: the same N sent SIGTERM and reaped by one process, no daemon".into(),
        unit: "s",
        better: crate::stats::Better::Neither,
        value: seconds,
    }
}

/// The shutdown reference with a supervisor's descriptors (see
/// `captured_stop_reference`): context, no ratio.
fn captured_stop_floor_measure(seconds: f64) -> Measure {
    Measure {
        name: "reference: the same N, each with stdin, stdout and stderr piped, sent SIGTERM, \
               read to end of file, reaped and a line logged for each by one process, no daemon"
            .into(),
        unit: "s",
        better: crate::stats::Better::Neither,
        value: seconds,
    }
}

/// The two-thread reference (see `spawn_reference`): context, no ratio.
fn spawn_floor_two(seconds: f64) -> Measure {
    Measure {
        name: "reference: the same N spawned by two threads of one process, no daemon".into(),
        unit: "s",
        better: crate::stats::Better::Neither,
        value: seconds,
    }
}

/// The programs' own CPU until all ran (each one's exec, dynamic loading and
/// start-up), summed and divided by the cores: no supervisor can start them
/// in less wall time. Context, no ratio.
/// S5's step: `kill -9` of `old`, a sleeper child of `parent`, then the
/// time in ms to the kernel's exec event of a new sleeper child of `parent`
/// (one not in `known`), against CLOCK_MONOTONIC read just before the kill.
fn kill_to_exec(
    watch: &mut crate::execwatch::ExecWatch,
    parent: i32,
    old: i32,
    known: &HashSet<i32>,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let new_child = |pid: i32| {
        !known.contains(&pid)
            && procfs::stat(pid).is_some_and(|stat| stat.ppid == parent)
            && is_sleeper(&procfs::cmdline(pid))
    };
    let t0 = crate::execwatch::monotonic_ns();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL)
        .with_context(|| format!("kill -9 of pid {old}"))?;
    let Some(exec) = watch.next_exec(timeout, new_child)? else {
        bail!("no new child of pid {parent} within {timeout:?} of kill -9")
    };
    Ok(exec.saturating_sub(t0) as f64 / 1e6)
}

/// S5's reference (see `respawn_reference`): context, no ratio.
fn respawn_floor(ms: f64) -> Measure {
    Measure {
        name: "reference: the same kills when a process only waits for its child and spawns it again, no daemon".into(),
        unit: "ms",
        better: crate::stats::Better::Neither,
        value: ms,
    }
}

fn programs_floor(cpu_seconds: f64) -> Measure {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Measure {
        name: "reference: the programs' own CPU until all ran, summed, over the cores".into(),
        unit: "s",
        better: crate::stats::Better::Neither,
        value: cpu_seconds / cores as f64,
    }
}

/// Runs `argv` once and returns its first output line that starts with
/// `prefix` (for versions).
pub async fn first_line(
    reaper: &Reaper,
    argv: &[String],
    cwd: &std::path::Path,
    prefix: &str,
) -> Option<String> {
    let out = run_command(reaper, argv, cwd, Duration::from_secs(30)).await.ok()?;
    let text = if out.stdout.trim().is_empty() { out.stderr } else { out.stdout };
    let line = text.lines().map(str::trim).find(|l| l.starts_with(prefix))?;
    Some(line.trim_end_matches(':').to_owned())
}

/// The kernel's record of every exec from now on, for the time of a spawn
/// storm's last program; `None`, said on stderr, without the privilege.
fn exec_log(scenario: &str) -> Option<crate::execwatch::ExecLog> {
    match crate::execwatch::ExecLog::start() {
        Ok(log) => Some(log),
        Err(error) => {
            eprintln!("{scenario}: no time of the last program's exec: {error:#}");
            None
        }
    }
}

/// Launch to the last exec among the `n` running programs, from the
/// kernel's time stamps: when the last program started, without the
/// polling interval of the `status` calls that saw it (up to 50 ms).
/// `None`, said on stderr, when the log could not see every program.
fn last_exec(
    launched: Instant,
    execs: Option<crate::execwatch::ExecLog>,
    pids: &[i32],
    n: usize,
) -> Option<Measure> {
    let execs = execs.map(crate::execwatch::ExecLog::finish)?;
    // The launch on the events' clock (CLOCK_MONOTONIC, as `Instant`'s).
    let since = u64::try_from(launched.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let launched = crate::execwatch::monotonic_ns().saturating_sub(since);
    let pids: HashSet<i32> = pids.iter().copied().collect();
    match execs.last_of(&pids) {
        (Some(last), seen) if seen == n => Some(Measure::lower(
            "launch to the last program's exec (kernel's exec event)",
            "s",
            last.saturating_sub(launched) as f64 / 1e9,
        )),
        (_, seen) => {
            let lost = if execs.lost { " (events were lost)" } else { "" };
            eprintln!("the exec log saw {seen} of {n} programs' execs{lost}");
            None
        }
    }
}

fn is_sleeper(cmdline: &[String]) -> bool {
    matches!(cmdline, [prog, arg] if prog.ends_with("sleep") && arg == "100000")
}

/// What S5's other programs run: a sleeper [`is_sleeper`] does not match.
const OTHER_SLEEPER: &str = "sleep 100001";

fn is_any_sleeper(cmdline: &[String]) -> bool {
    is_sleeper(cmdline)
        || matches!(cmdline, [prog, arg] if prog.ends_with("sleep") && arg == "100001")
}

/// Waits for the generator's start time stamp in its stderr log.
async fn read_gen_start(path: &std::path::Path, timeout: Duration) -> anyhow::Result<u64> {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(ns) = text
            .lines()
            .find_map(|l| l.strip_prefix(crate::GEN_START_PREFIX))
            .and_then(|v| v.trim().parse().ok())
        {
            return Ok(ns);
        }
        ensure!(t0.elapsed() < timeout, "no start stamp in {}", path.display());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn shell_word(path: &std::path::Path) -> String {
    let s = path.display().to_string();
    shlex::try_quote(&s).map_or(s.clone(), |q| q.into_owned())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_run_only_the_cases_their_model_has() {
        for model in [Model::S6, Model::Horust] {
            for case in [
                Case::Spawn { n: 10, startsecs: 0 },
                Case::Memory { n: 5 },
                Case::Idle { n: 5 },
                Case::Restart { others: 0 },
                Case::Restart { others: 3 },
                Case::Scale { n: 50 },
            ] {
                assert_eq!(case.skip_reason(model), None, "{case:?}");
            }
            for case in [
                Case::Spawn { n: 10, startsecs: 1 },
                Case::Status { n: 5 },
                Case::Logs { rotate: false },
                Case::Update { n: 10 },
                Case::CrashLoop { n: 3 },
            ] {
                let reason = case.skip_reason(model).unwrap();
                assert!(reason.contains(model.name()), "{reason}");
                // A skip is not a failure: the suite's exit status looks for that word.
                assert!(!reason.contains("failed"), "{reason}");
            }
        }
        assert_eq!(Case::CrashLoop { n: 3 }.skip_reason(Model::Supervisord), None);
        assert_eq!(Case::Memory { n: 0 }.skip_reason(Model::S6), None);
        assert!(Case::Memory { n: 0 }.skip_reason(Model::Horust).unwrap().contains("no service"));
    }

    #[test]
    fn sleeper_detection() {
        assert!(is_sleeper(&["sleep".into(), "100000".into()]));
        assert!(is_sleeper(&["/usr/bin/sleep".into(), "100000".into()]));
        assert!(!is_sleeper(&["sleep".into(), "100001".into()]));
        assert!(!is_sleeper(&["sleep".into()]));
    }
}
