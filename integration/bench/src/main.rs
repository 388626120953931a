//! The `vigil-bench` binary: the benchmark suite, plus two tiny program modes
//! the suite runs under the daemons (`gen`, the S6 output generator, and
//! `exit`, the S8 crash-looping program), so the benchmark needs nothing but
//! itself and the daemons under test.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vigil_bench::reaper::Reaper;
use vigil_bench::report::{self, Machine, RunInfo, TargetInfo};
use vigil_bench::run::Pacing;
use vigil_bench::scenarios::{Bench, Options, first_line};
use vigil_bench::target::Target;

/// Benchmarks vigild/vigilctl against supervisord/supervisorctl, s6 and Horust.
///
/// Without a subcommand, runs the scenarios S1-S9 against every target and
/// prints the side-by-side table.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    suite: SuiteArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Write BYTES of 100-byte numbered lines to stdout as fast as possible
    /// (the S6 generator); the start time stamp goes to stderr.
    Gen { bytes: u64 },
    /// Exit at once with CODE (the S8 crash-looping program).
    Exit { code: i32 },
    /// Test support: a stand-in daemon that starts CHILDREN `pause`
    /// processes and, on SIGTERM, exits without stopping them (or, with
    /// --ignore-term, does not exit at all).
    #[command(hide = true)]
    FakeDaemon {
        #[arg(long, default_value_t = 2)]
        children: usize,
        #[arg(long)]
        ignore_term: bool,
    },
    /// Test support: sleep until killed.
    #[command(hide = true)]
    Pause,
    /// S5's reference: run `sleep 100000` with stdout and stderr piped and
    /// start it again as soon as it ends, until stdin closes; then kill it,
    /// wait for it and exit.
    #[command(hide = true)]
    Respawn,
}

#[derive(Args)]
struct SuiteArgs {
    /// Comma-separated targets: `vigil`, `supervisord`, `s6`, `horust`, or
    /// labels of `--custom` targets. Default: all four; vigil and supervisord
    /// are left out when not found, s6 and horust get a skip note per case.
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// An extra target: `LABEL::DAEMON TEMPLATE::CTL TEMPLATE`, templates
    /// using {config}, {dir}, {sock}. May be repeated.
    #[arg(long)]
    custom: Vec<String>,
    /// Directory holding vigild and vigilctl [default: this binary's directory].
    #[arg(long)]
    vigil_bin_dir: Option<PathBuf>,
    /// Virtualenv with supervisord/supervisorctl [default: $VIGIL_SUPERVISOR_VENV].
    #[arg(long)]
    supervisor_venv: Option<PathBuf>,
    /// Directory holding s6-svscan [default: the one on PATH].
    #[arg(long)]
    s6_bin_dir: Option<PathBuf>,
    /// The horust binary [default: `horust` on PATH, else $CARGO_HOME/bin].
    #[arg(long)]
    horust_bin: Option<PathBuf>,
    /// Small sizes, one repetition, short idle: a check that the suite works.
    #[arg(long)]
    smoke: bool,
    /// Comma-separated scenarios to run, e.g. S1,S5 [default: all].
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Repetitions per scenario case and target [default: 3; smoke 1].
    #[arg(long)]
    repeats: Option<usize>,
    /// S1 program counts [default: 10,100,500; smoke 5].
    #[arg(long, value_delimiter = ',')]
    s1_n: Vec<usize>,
    /// S1 startsecs values [default: 1,0; smoke 0].
    #[arg(long, value_delimiter = ',')]
    s1_startsecs: Vec<u32>,
    /// S2 program counts [default: 0,100,500; smoke 0,5].
    #[arg(long, value_delimiter = ',')]
    s2_n: Vec<usize>,
    /// S3 program count [default: 500; smoke 5].
    #[arg(long)]
    s3_n: Option<usize>,
    /// S3 idle window in seconds [default: 20; smoke 1].
    #[arg(long)]
    idle_secs: Option<f64>,
    /// S4 program count [default: 500; smoke 5].
    #[arg(long)]
    s4_n: Option<usize>,
    /// S4 calls per repetition [default: 10; smoke 3].
    #[arg(long)]
    s4_calls: Option<usize>,
    /// S5 kills per repetition [default: 20; smoke 3].
    #[arg(long)]
    s5_kills: Option<usize>,
    /// Programs running beside the one S5 kills, in its second case; 0 skips
    /// that case [default: 500; smoke 5].
    #[arg(long)]
    s5_others: Option<usize>,
    /// S6 bytes generated, a multiple of 100 [default: 200000000; smoke 20000000].
    #[arg(long)]
    s6_bytes: Option<u64>,
    /// S6 log format of the generator (vigil's stdout_logfile_format: raw,
    /// timestamped or json); other than raw, only the case without rotation
    /// runs and only vigil understands the key [default: raw].
    #[arg(long, value_parser = ["raw", "timestamped", "json"])]
    s6_format: Option<String>,
    /// S7 programs running before the update [default: 100; smoke 10].
    #[arg(long)]
    s7_n: Option<usize>,
    /// S8 crash-looping programs [default: 50; smoke 3].
    #[arg(long)]
    s8_n: Option<usize>,
    /// S9 program count [default: 5000; smoke 50].
    #[arg(long)]
    s9_n: Option<usize>,
    /// Also run S9 against supervisord and Horust (slow: supervisord needs
    /// many descriptors, Horust reaps 20 children per 300 ms tick).
    #[arg(long)]
    s9_all_targets: bool,
    /// S10 program counts, comma-separated [default: 500,5000; smoke 20].
    #[arg(long, value_delimiter = ',')]
    s10_n: Vec<usize>,
    /// Seconds of quiet before idle figures are read [default: 3; smoke 0.5].
    #[arg(long)]
    settle: Option<f64>,
    /// Milliseconds between two `status` polls.
    #[arg(long, default_value_t = 50)]
    poll_interval_ms: u64,
    /// Seconds one control command may take.
    #[arg(long, default_value_t = 120.0)]
    ctl_timeout: f64,
    /// Seconds to reach all RUNNING / FATAL.
    #[arg(long, default_value_t = 180.0)]
    spawn_timeout: f64,
    /// Seconds from SIGTERM to exit before SIGKILL.
    #[arg(long, default_value_t = 60.0)]
    shutdown_timeout: f64,
    /// Seconds for one S5 respawn.
    #[arg(long, default_value_t = 10.0)]
    restart_timeout: f64,
    /// Seconds for one S6 log to complete.
    #[arg(long, default_value_t = 120.0)]
    log_timeout: f64,
    /// Global budget in seconds; later repetitions are skipped past it.
    #[arg(long, default_value_t = 2400.0)]
    budget: f64,
    /// HTTP path of the XML-RPC endpoint; empty to skip the direct RPC.
    #[arg(long, default_value = "/RPC2")]
    rpc_path: String,
    /// Parent of the per-run temp directories [default: the system temp dir].
    #[arg(long)]
    tmp_root: Option<PathBuf>,
    /// Keep the per-run directories (configs, logs) for inspection.
    #[arg(long)]
    keep: bool,
    /// Markdown report [default: BENCHMARKS.md; with --smoke none].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write every raw value as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Some(Mode::Gen { bytes }) => generate(bytes),
        Some(Mode::Exit { code }) => std::process::exit(code),
        Some(Mode::FakeDaemon { children, ignore_term }) => fake_daemon(children, ignore_term),
        Some(Mode::Pause) => pause_forever(),
        Some(Mode::Respawn) => respawn(),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(suite(cli.suite))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The S6 generator: stamp, then the stream, written straight to fd 1
/// (std's stdout is line-buffered; a plain file handle is not).
fn generate(bytes: u64) -> anyhow::Result<()> {
    let stamp = vigil_bench::monotonic_ns();
    let mut stderr = std::io::stderr();
    writeln!(stderr, "{}{stamp}", vigil_bench::GEN_START_PREFIX)?;
    stderr.flush()?;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().context("duplicating stdout")?;
    let mut out = std::fs::File::from(fd);
    vigil_bench::logs::generate(&mut out, bytes).context("writing the stream")
}

/// The misbehaving daemon of the process-safety tests: its children are
/// left behind when it dies, exactly what the harness must clean up.
fn fake_daemon(children: usize, ignore_term: bool) -> anyhow::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    if ignore_term {
        // SAFETY: SIG_IGN installs no handler code; nothing else in this
        // process changes SIGTERM's disposition.
        unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.context("ignoring SIGTERM")?;
    }
    let exe = std::env::current_exe()?;
    for _ in 0..children {
        // Never waited for on purpose: this process stands for a daemon
        // that loses track of its children.
        std::process::Command::new(&exe).arg("pause").spawn().context("spawning a child")?;
    }
    pause_forever()
}

/// The least a supervisor does for one program (see [`Mode::Respawn`]):
/// block in `waitid` on the child, spawn the next at once.
fn respawn() -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    use nix::unistd::Pid;
    use std::sync::{Arc, Mutex, PoisonError};

    /// `pid` is the child while it lives or is a zombie, so the stopping
    /// thread never signals a pid that may have been reused.
    #[derive(Default)]
    struct State {
        stop: bool,
        pid: Option<Pid>,
    }
    let state = Arc::new(Mutex::new(State::default()));
    let stopper = Arc::clone(&state);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let mut state = stopper.lock().unwrap_or_else(PoisonError::into_inner);
        state.stop = true;
        if let Some(pid) = state.pid {
            let _ = kill(pid, Signal::SIGKILL);
        }
    });
    loop {
        let (child, pid) = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.stop {
                return Ok(());
            }
            let child = std::process::Command::new("sleep")
                .arg("100000")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("spawning sleep")?;
            let pid = Pid::from_raw(i32::try_from(child.id()).context("pid")?);
            state.pid = Some(pid);
            (child, pid)
        };
        // Until it is a zombie, then forget the pid, then reap it.
        loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => {
                    other.context("waiting for sleep")?;
                    break;
                }
            }
        }
        state.lock().unwrap_or_else(PoisonError::into_inner).pid = None;
        // This process is the only waiter on its children: std's `Child`
        // is never waited for, its pipes close when it is dropped.
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED).context("reaping sleep")?;
        drop(child);
    }
}

fn pause_forever() -> anyhow::Result<()> {
    loop {
        nix::unistd::pause();
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

fn or_list<T: Clone>(given: &[T], full: &[T], smoke: &[T], is_smoke: bool) -> Vec<T> {
    if !given.is_empty() {
        given.to_vec()
    } else if is_smoke {
        smoke.to_vec()
    } else {
        full.to_vec()
    }
}

fn options(a: &SuiteArgs) -> anyhow::Result<Options> {
    let s = a.smoke;
    let pick = |given: Option<usize>, full: usize, smoke: usize| {
        given.unwrap_or(if s { smoke } else { full })
    };
    let all = ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10"];
    let scenarios: BTreeSet<String> = if a.scenarios.is_empty() {
        all.iter().map(|s| s.to_string()).collect()
    } else {
        a.scenarios.iter().map(|s| s.trim().to_uppercase()).collect()
    };
    if let Some(bad) = scenarios.iter().find(|s| !all.contains(&s.as_str())) {
        bail!("unknown scenario '{bad}' (known: {})", all.join(","));
    }
    let s6_bytes = a.s6_bytes.unwrap_or(if s { 20_000_000 } else { 200_000_000 });
    if s6_bytes == 0 || !s6_bytes.is_multiple_of(vigil_bench::logs::LINE_LEN) {
        bail!("--s6-bytes must be a positive multiple of 100, got {s6_bytes}");
    }
    let s7_n = pick(a.s7_n, 100, 10);
    if s7_n < 10 {
        bail!("--s7-n must be at least 10 (a tenth is removed and added), got {s7_n}");
    }
    let repeats = pick(a.repeats, 3, 1);
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    Ok(Options {
        scenarios,
        repeats,
        s1_n: or_list(&a.s1_n, &[10, 100, 500], &[5], s),
        s1_startsecs: or_list(&a.s1_startsecs, &[1, 0], &[0], s),
        s2_n: or_list(&a.s2_n, &[0, 100, 500], &[0, 5], s),
        s3_n: pick(a.s3_n, 500, 5),
        idle: secs(a.idle_secs.unwrap_or(if s { 1.0 } else { 20.0 })),
        s4_n: pick(a.s4_n, 500, 5).max(1),
        s4_calls: pick(a.s4_calls, 10, 3).max(1),
        s5_kills: pick(a.s5_kills, 20, 3).max(1),
        s5_others: pick(a.s5_others, 500, 5),
        s6_bytes,
        s6_format: match a.s6_format.as_deref() {
            None | Some("raw") => vigil_bench::logs::Format::Raw,
            Some("timestamped") => vigil_bench::logs::Format::Timestamped,
            _ => vigil_bench::logs::Format::Json,
        },
        s7_n,
        s8_n: pick(a.s8_n, 50, 3).max(1),
        s9_n: pick(a.s9_n, 5000, 50).max(1),
        s9_all_targets: a.s9_all_targets,
        s10_n: if a.s10_n.is_empty() {
            if s { vec![20] } else { vec![500, 5000] }
        } else {
            a.s10_n.clone()
        },
        settle: secs(a.settle.unwrap_or(if s { 0.5 } else { 3.0 })),
        spawn_timeout: secs(a.spawn_timeout),
        restart_timeout: secs(a.restart_timeout),
        log_timeout: secs(a.log_timeout),
        budget: secs(a.budget),
        rpc_path: a.rpc_path.clone(),
        exe: std::env::current_exe().context("locating this binary")?,
    })
}

/// `path` made absolute: daemons run in their run directory, so a relative
/// path given on the command line would name nothing there.
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// `name` in a directory of `$PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// s6 and Horust: found, or the reason they are not, with how to install
/// them (`.ci/run` does).
fn peer_targets(a: &SuiteArgs) -> Vec<Result<Target, (String, String)>> {
    let s6 = match &a.s6_bin_dir {
        Some(dir) => Some(absolute(dir.clone())),
        None => on_path("s6-svscan").and_then(|p| p.parent().map(PathBuf::from)),
    };
    let s6 = match s6 {
        Some(dir) if dir.join("s6-svscan").is_file() => Ok(Target::s6(&dir)),
        Some(dir) => Err(format!("no s6-svscan in {}", dir.display())),
        None => Err("s6-svscan not found on PATH (apt-get install s6)".into()),
    };
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin").join("horust"));
    let horust = a
        .horust_bin
        .clone()
        .map(absolute)
        .or_else(|| on_path("horust"))
        .or_else(|| cargo_bin.filter(|p| p.is_file()));
    let horust = match horust {
        Some(bin) if bin.is_file() => Ok(Target::horust(&bin)),
        Some(bin) => Err(format!("{} not found", bin.display())),
        None => {
            Err("horust not found on PATH nor in $CARGO_HOME/bin (cargo install horust)".into())
        }
    };
    [("s6", s6), ("horust", horust)]
        .into_iter()
        .map(|(label, found)| {
            found.map_err(|why| (label.to_owned(), format!("not installed: {why}")))
        })
        .collect()
}

/// The targets to run, and those asked for (or looked for by default) that
/// are not installed, with the reason.
type Targets = (Vec<Target>, Vec<(String, String)>);

fn targets(a: &SuiteArgs) -> anyhow::Result<Targets> {
    let bin_dir = match &a.vigil_bin_dir {
        Some(d) => absolute(d.clone()),
        None => std::env::current_exe()?.parent().context("binary has no directory")?.to_path_buf(),
    };
    let venv = a
        .supervisor_venv
        .clone()
        .or_else(|| std::env::var_os("VIGIL_SUPERVISOR_VENV").map(PathBuf::from))
        .map(absolute);
    let vigil = Target::vigil(&bin_dir);
    let supervisord = venv.as_deref().map(Target::supervisord);
    let customs: Vec<Target> =
        a.custom.iter().map(|c| Target::parse_custom(c)).collect::<Result<_, _>>()?;
    let found = |t: &Target| t.executables().iter().all(|p| p.is_file());
    let peers = peer_targets(a);
    let peer = |label: &str| {
        peers.iter().find(|p| p.as_ref().map_or_else(|(l, _)| l == label, |t| t.label == label))
    };
    let mut out = Vec::new();
    let mut missing = Vec::new();
    if a.targets.is_empty() {
        if !found(&vigil) {
            eprintln!(
                "vigil-bench: warning: no vigild/vigilctl in {} (build them with \
                 `cargo build --workspace --bins`, same profile); running without target 'vigil'",
                bin_dir.display()
            );
        }
        out.extend(Some(vigil).filter(found));
        out.extend(supervisord.filter(found));
        for p in &peers {
            match p {
                Ok(t) => out.push(t.clone()),
                Err(m) => missing.push(m.clone()),
            }
        }
        out.extend(customs);
    } else {
        for name in &a.targets {
            let t = match name.as_str() {
                "s6" | "horust" => match peer(name).expect("both peers are listed") {
                    Ok(t) => Some(t.clone()),
                    Err(m) => {
                        missing.push(m.clone());
                        continue;
                    }
                },
                "vigil" => Some(vigil.clone()),
                "supervisord" => Some(supervisord.clone().with_context(|| {
                    "target 'supervisord': no virtualenv (pass --supervisor-venv or set VIGIL_SUPERVISOR_VENV)"
                })?),
                other => customs.iter().find(|c| c.label == other).cloned(),
            };
            let t = t.with_context(|| format!("unknown target '{name}'"))?;
            if let Some(missing) = t.executables().into_iter().find(|p| !p.is_file()) {
                bail!("target '{name}': {} not found", missing.display());
            }
            out.push(t);
        }
    }
    let mut seen = BTreeSet::new();
    let labels = out.iter().map(|t| &t.label).chain(missing.iter().map(|(l, _)| l));
    if let Some(dup) = labels.clone().find(|l| !seen.insert((*l).clone())) {
        bail!("target '{dup}' given twice");
    }
    if out.is_empty() {
        bail!(
            "no target found: build vigild and vigilctl next to vigil-bench (cargo build --workspace --bins), \
             or set VIGIL_SUPERVISOR_VENV, or pass --targets/--custom"
        );
    }
    Ok((out, missing))
}

/// Lets daemons inherit as many descriptors as the hard limit allows
/// (S9 runs thousands of programs, each with pipes and log files).
fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn suite(a: SuiteArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let reaper = Reaper::install().context("becoming a child subreaper")?;
    raise_nofile_limit();
    let opts = options(&a)?;
    let (targets, missing) = targets(&a)?;
    let pacing = Pacing {
        poll_interval: Duration::from_millis(a.poll_interval_ms),
        ctl_timeout: secs(a.ctl_timeout),
        shutdown_timeout: secs(a.shutdown_timeout),
        keep: a.keep,
        tmp_root: a.tmp_root.clone().unwrap_or_else(std::env::temp_dir),
    };
    let mut infos = Vec::new();
    for t in &targets {
        let version = match &t.version {
            Some(cmd) => {
                let argv = shlex::split(cmd).context("version command")?;
                first_line(&reaper, &argv, &std::env::temp_dir(), t.version_prefix).await
            }
            None => None,
        };
        infos.push(TargetInfo {
            label: t.label.clone(),
            daemon: t.daemon.clone(),
            ctl: t.ctl.clone(),
            version,
        });
    }
    for (label, why) in &missing {
        eprintln!("vigil-bench: target '{label}' {why}; its rows are skipped");
        infos.push(TargetInfo {
            label: label.clone(),
            daemon: String::new(),
            ctl: None,
            version: Some(why.clone()),
        });
    }
    let mut model_notes = Vec::new();
    for (label, notes) in
        [("s6", vigil_bench::s6::MODEL_NOTES), ("horust", vigil_bench::horust::MODEL_NOTES)]
    {
        if infos.iter().any(|t| t.label == label) {
            model_notes.extend(notes.iter().map(|n| n.to_string()));
        }
    }
    eprintln!(
        "targets: {}",
        targets.iter().map(|t| t.label.as_str()).collect::<Vec<_>>().join(", ")
    );
    let repeats = opts.repeats;
    let mut bench = Bench::new(opts, pacing, targets, reaper.clone());
    bench.missing = missing;
    tokio::select! {
        () = bench.run_all() => {}
        _ = tokio::signal::ctrl_c() => {
            // Dropping the suite's future drops the current run, which kills
            // its daemon and the daemon's programs.
            bench.results.notes.push("interrupted (Ctrl-C); the remaining scenarios did not run".into());
            eprintln!("interrupted; writing what was measured");
        }
    }
    let info = RunInfo {
        machine: Machine::detect(),
        command_line: std::env::args()
            .map(|a| shlex::try_quote(&a).map_or(a.clone(), |q| q.into_owned()))
            .collect::<Vec<_>>()
            .join(" "),
        targets: infos,
        repeats,
        duration_s: started.elapsed().as_secs_f64(),
        orphans_reaped: reaper.orphans_reaped(),
        model_notes,
    };
    let md = report::markdown(&info, &bench.results);
    println!(
        "{}",
        bench.results.table(&info.targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>())
    );
    for n in &bench.results.notes {
        println!("note: {n}");
    }
    let out = a.out.clone().or_else(|| (!a.smoke).then(|| PathBuf::from("BENCHMARKS.md")));
    if let Some(path) = out {
        std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &a.json {
        let text = report::json(&info, &bench.results)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if bench.results.notes.iter().any(|n| n.contains("failed")) {
        bail!("some repetitions failed (see the notes above)");
    }
    Ok(())
}
