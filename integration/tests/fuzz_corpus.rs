//! Replays every committed input of the fuzz targets on stable: the seed corpora in
//! `fuzz/corpus/<target>/` and the minimized crashes in `fuzz/regressions/<target>/`
//! go through the same entry points the libFuzzer binaries call, so a fixed crash
//! stays fixed without nightly in CI.

#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/src/lib.rs"]
mod entry;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, for every target; a missing directory is empty.
fn inputs(kind: &str) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    for target in entry::TARGETS {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else { continue };
        for file in dir {
            let path = file.expect("a readable corpus directory").path();
            if path.is_file() {
                out.push((target, path));
            }
        }
    }
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let inputs = inputs(kind);
    for (target, path) in &inputs {
        let data = std::fs::read(path).expect("a readable corpus file");
        eprintln!("{target}: {}", path.display());
        assert!(entry::run(target, &data));
    }
    inputs.len()
}

#[test]
fn every_target_has_a_seed_corpus_and_it_replays() {
    for target in entry::TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(count > 0, "no seed corpus in {}", dir.display());
    }
    assert!(replay("corpus") >= entry::TARGETS.len());
}

#[test]
fn every_minimized_crash_replays_without_failing() {
    replay("regressions");
}

#[test]
fn a_real_client_session_replays_through_the_tarpc_target() {
    let session = entry::recorded_tarpc_session();
    assert!(session.len() > 4, "the client sent its hello");
    entry::tarpc(&session);
    if let Some(out) = std::env::var_os("VIGIL_FUZZ_WRITE_TARPC_SEED") {
        std::fs::write(out, &session).expect("writing the seed");
    }
}
