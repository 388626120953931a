//! Parse benchmark (not a test): generates a config with 5,000 programs in both
//! forms and prints how long loading (read, expand, validate) takes.
//!
//! Run: `cargo run -p vigil-config --example parse_bench --release`

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

fn time(name: &str, text: &str, path: &str) -> Duration {
    // The real environment: its size matters, every ENV_X is an expansion name.
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let dir = std::env::temp_dir();
    let path = dir.join(path);
    let mut best = Duration::MAX;
    let mut summary = String::new();
    for _ in 0..5 {
        let start = Instant::now();
        let loaded = vigil_config::load_str(text, &path, &env).unwrap_or_else(|e| panic!("{e}"));
        best = best.min(start.elapsed());
        summary = vigil_config::summary(&loaded.config);
    }
    println!(
        "{name}: {} KiB, best of 5: {:.1} ms ({summary})",
        text.len() / 1024,
        best.as_secs_f64() * 1000.0
    );
    best
}

fn main() {
    time("INI ", &ini(), "bench.conf");
    time("TOML", &toml(), "bench.toml");
}
