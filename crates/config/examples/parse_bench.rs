//! Parse benchmark (not a test): generates a config with 5,000 programs in both
//! forms and prints how long loading (read, expand, validate) takes.
//!
//! Run: `cargo run -p vigil-config --example parse_bench --release`
//!
//! Both wall time and this thread's CPU time are printed: on a shared machine the
//! wall time includes waiting for a core, the CPU time is what one load costs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const PROGRAMS: usize = 5_000;

fn ini() -> String {
    let mut text = String::from("[supervisord]\nlogfile=NONE\nenvironment=GLOBAL=\"1\"\n\n");
    for i in 0..PROGRAMS {
        write!(
            text,
            "[program:app{i}]\ncommand=/usr/bin/python3 -m http.server {port} --bind 127.0.0.1\n\
             directory=%(here)s\nautorestart=true\nstartsecs=2\nstopsignal=TERM\nexitcodes=0,2\n\
             stdout_logfile=NONE\nstderr_logfile=NONE\nstdout_logfile_maxbytes=1MB\n\
             environment=PORT=\"{port}\",NAME=\"%(program_name)s\"\npriority={prio}\n\n",
            port = 10_000 + i,
            prio = i % 100,
        )
        .expect("write to String");
    }
    for g in 0..PROGRAMS / 100 {
        let members: Vec<String> = (0..10).map(|k| format!("app{}", g * 100 + k)).collect();
        writeln!(text, "[group:g{g}]\nprograms={}\n", members.join(",")).expect("write to String");
    }
    text
}

fn toml() -> String {
    let mut text = String::from("[supervisord]\nlogfile = \"NONE\"\n\n");
    for i in 0..PROGRAMS {
        write!(
            text,
            "[program.app{i}]\ncommand = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"{port}\"]\n\
             autorestart = true\nstartsecs = 2\nexitcodes = [0, 2]\nstdout_logfile = \"NONE\"\n\
             stderr_logfile = \"NONE\"\nenvironment = {{ PORT = \"{port}\" }}\npriority = {prio}\n\n",
            port = 10_000 + i,
            prio = i % 100,
        )
        .expect("write to String");
    }
    text
}

/// User plus system CPU time of the calling thread.
fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage =
        getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage(RUSAGE_THREAD) works on Linux");
    let to_duration = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    to_duration(usage.user_time()) + to_duration(usage.system_time())
}

fn time(name: &str, text: &str, path: &str) {
    // The real environment: its size matters, every ENV_X is an expansion name.
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let path = std::env::temp_dir().join(path);
    let mut best_wall = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    let mut summary = String::new();
    for _ in 0..5 {
        let start = Instant::now();
        let cpu = thread_cpu();
        let loaded = vigil_config::load_str(text, &path, &env).unwrap_or_else(|e| panic!("{e}"));
        best_cpu = best_cpu.min(thread_cpu().saturating_sub(cpu));
        best_wall = best_wall.min(start.elapsed());
        summary = vigil_config::summary(&loaded.config);
    }
    println!(
        "{name}: {} KiB, best of 5: {:.1} ms wall, {:.1} ms CPU ({summary})",
        text.len() / 1024,
        best_wall.as_secs_f64() * 1000.0,
        best_cpu.as_secs_f64() * 1000.0
    );
}

fn main() {
    time("INI ", &ini(), "bench.conf");
    time("TOML", &toml(), "bench.toml");
}
