//! `environment=` benchmark (not a test): loads one program whose environment has
//! many pairs, in both forms and in `[supervisord]`, and prints how long each load
//! takes. Parsing the pairs must grow linearly with the line's length.
//!
//! Run: `cargo run -p vigil-config --example env_bench --release [PAIRS...]`
//! (default: 16384 and 65536 pairs, then a line of about 8 MB).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// `K0="v0",K1="v1",...` with `pairs` pairs.
fn pairs_ini(pairs: usize) -> String {
    let mut line = String::new();
    for i in 0..pairs {
        if i > 0 {
            line.push(',');
        }
        write!(line, "K{i}=\"v{i}\"").expect("write to String");
    }
    line
}

/// `{ K0 = "v0", K1 = "v1", ... }` with `pairs` pairs.
fn pairs_toml(pairs: usize) -> String {
    let mut table = String::from("{ ");
    for i in 0..pairs {
        if i > 0 {
            table.push_str(", ");
        }
        write!(table, "K{i} = \"v{i}\"").expect("write to String");
    }
    table.push_str(" }");
    table
}

/// How many pairs make an INI line of at least `bytes` bytes.
fn pairs_for_bytes(bytes: usize) -> usize {
    let mut pairs = 0;
    let mut len = 0;
    while len < bytes {
        len += format!("K{pairs}=\"v{pairs}\",").len();
        pairs += 1;
    }
    pairs
}

fn time(name: &str, text: &str, path: &str) {
    let env = BTreeMap::new();
    let start = Instant::now();
    let loaded =
        vigil_config::load_str(text, Path::new(path), &env).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = start.elapsed();
    let count = loaded.config.processes().map(|p| p.environment.len()).sum::<usize>()
        + loaded.config.supervisord.environment.len();
    println!(
        "{name}: {:>6} KiB, {count} variables: {:.3} s",
        text.len() / 1024,
        elapsed.as_secs_f64()
    );
}

fn run(pairs: usize) {
    let ini = pairs_ini(pairs);
    time(
        &format!("INI  [program]     {pairs:>7} pairs"),
        &format!(
            "[supervisord]\nlogfile=NONE\n[program:a]\ncommand=/bin/true\nenvironment={ini}\n"
        ),
        "/tmp/env.conf",
    );
    time(
        &format!("INI  [supervisord] {pairs:>7} pairs"),
        &format!(
            "[supervisord]\nlogfile=NONE\nenvironment={ini}\n[program:a]\ncommand=/bin/true\n"
        ),
        "/tmp/env.conf",
    );
    let toml = pairs_toml(pairs);
    time(
        &format!("TOML [program]     {pairs:>7} pairs"),
        &format!(
            "[supervisord]\nlogfile = \"NONE\"\n[program.a]\ncommand = \"/bin/true\"\nenvironment = {toml}\n"
        ),
        "/tmp/env.toml",
    );
    time(
        &format!("TOML string        {pairs:>7} pairs"),
        &format!(
            "[supervisord]\nlogfile = \"NONE\"\n[program.a]\ncommand = \"/bin/true\"\nenvironment = '{ini}'\n"
        ),
        "/tmp/env.toml",
    );
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if args.is_empty() {
        run(16_384);
        run(65_536);
        run(pairs_for_bytes(8 << 20));
    } else {
        args.into_iter().for_each(run);
    }
}
