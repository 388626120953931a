//! Golden tests: every `test_data/ok/*.{conf,toml}` loads and its model (plus
//! warnings) matches the `.json` next to it; every `test_data/err/*` fails and its
//! error list matches the `.txt` next to it. `VIGIL_BLESS=1` rewrites the goldens.
//! Absolute paths of the test data directory are written as `$TEST_DATA`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_config::{LoadOptions, load_with};

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data")
}

/// A fixed environment so goldens do not depend on the machine.
fn env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("HOME".to_string(), "/home/vigil".to_string()),
        ("USER".to_string(), "vigil".to_string()),
        ("TMPDIR".to_string(), "/tmp".to_string()),
        ("SHELL".to_string(), "/bin/sh".to_string()),
    ])
}

fn options() -> LoadOptions {
    LoadOptions { host_node_name: "testhost".to_string() }
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("test_data dir exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.is_file()
                && matches!(p.extension().and_then(|e| e.to_str()), Some("conf" | "toml" | "ini"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

fn scrub(text: &str) -> String {
    text.replace(&test_data().display().to_string(), "$TEST_DATA")
}

/// Compares with the golden file, or writes it when blessing. Returns a failure message.
fn check(golden: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("VIGIL_BLESS").is_some() {
        std::fs::write(golden, actual).expect("write golden");
        return None;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    (expected != actual).then(|| {
        format!("{} differs (VIGIL_BLESS=1 to regenerate)\n--- expected\n{expected}\n--- actual\n{actual}", golden.display())
    })
}

#[test]
fn ok_configs_match_their_models() {
    let mut failures = Vec::new();
    for input in inputs(&test_data().join("ok")) {
        match load_with(&input, &env(), &options()) {
            Ok(loaded) => {
                let value = serde_json::json!({ "config": loaded.config, "warnings": loaded.warnings
                    .iter().map(ToString::to_string).collect::<Vec<_>>() });
                let json = serde_json::to_string_pretty(&value).expect("serializable") + "\n";
                failures.extend(check(
                    &input.with_extension(format!("{}.json", ext(&input))),
                    &scrub(&json),
                ));
            }
            Err(errors) => failures.push(format!("{} failed to load:\n{errors}", input.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A live upgrade carries the loaded model to the next image in postcard
/// (vigild's `carry.rs`): every model reads back equal.
#[test]
fn ok_models_survive_a_binary_round_trip() {
    for input in inputs(&test_data().join("ok")) {
        let loaded = load_with(&input, &env(), &options()).expect("loads");
        let bytes = postcard::to_stdvec(&loaded.config).expect("postcard");
        let back: vigil_config::Config = postcard::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{} does not read back: {e}", input.display()));
        assert_eq!(back, loaded.config, "{}", input.display());
    }
}

#[test]
fn err_configs_report_every_error() {
    let mut failures = Vec::new();
    for input in inputs(&test_data().join("err")) {
        match load_with(&input, &env(), &options()) {
            Ok(_) => failures.push(format!("{} loaded but should fail", input.display())),
            Err(errors) => {
                let text = format!("{errors}\n");
                failures.extend(check(
                    &input.with_extension(format!("{}.txt", ext(&input))),
                    &scrub(&text),
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn ext(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_string()
}
