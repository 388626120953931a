//! The crate dependency arrows (ARCHITECTURE.md, "Invariants") point one way; checked from
//! `cargo metadata`, in the spirit of rust-analyzer's tidy tests.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Which workspace crates a package may depend on by path (any kind:
/// normal, build and dev).
enum Rule {
    Only(&'static [&'static str]),
    /// The black-box tests may use anything.
    Anything,
    AnythingBut(&'static [&'static str]),
}

fn rule(package: &str) -> Rule {
    match package {
        "vigil-config" => Rule::Only(&[]),
        "vigil-core" => Rule::Only(&["vigil-config"]),
        // supervisord's vocabulary (namespecs, signal names) lives in vigil-config.
        "vigil-rpc" => Rule::Only(&["vigil-config"]),
        // Vigil over HTTP reaches the daemon through vigil-rpc's service only, never
        // through the supervision tree: vigild wires it.
        "vigil-xmlrpc" => Rule::Only(&["vigil-config", "vigil-rpc"]),
        "vigil-daemon" => Rule::Only(&["vigil-config", "vigil-core", "vigil-rpc", "vigil-xmlrpc"]),
        "vigil-cli" => Rule::Only(&["vigil-config", "vigil-rpc"]),
        "vigil-integration" => Rule::Anything,
        // Benchmarks measure the pieces, never through the supervision core.
        bench if bench.contains("bench") => Rule::AnythingBut(&["vigil-core"]),
        other => panic!("workspace package {other} has no rule in workspace_deps_point_one_way"),
    }
}

/// Dev-dependencies allowed beyond the rules, each with its reason: the
/// package's man pages and completions are generated from both binaries' clap
/// definitions by vigil-daemon's `gen-docs` example (the Debian package is
/// built from vigil-daemon's manifest and ships vigilctl too).
const DEV_EXCEPTIONS: &[(&str, &str)] = &[("vigil-daemon", "vigil-cli")];

#[test]
fn workspace_deps_point_one_way() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let output = vigil_integration::run(&mut command, vigil_integration::CTL_TIMEOUT);
    output.expect_code(0);
    let metadata: Value = serde_json::from_str(&output.stdout).unwrap();
    let members: BTreeSet<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for expected in ["vigil-core", "vigil-xmlrpc", "vigil-integration"] {
        assert!(members.contains(expected), "{expected} missing from {members:?}");
    }
    let mut violations = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let rule = rule(name);
        for dependency in package["dependencies"].as_array().unwrap() {
            if dependency.get("path").is_none_or(Value::is_null) {
                continue;
            }
            let target = dependency["name"].as_str().unwrap();
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            let ok = match rule {
                Rule::Only(allowed) => allowed.contains(&target),
                Rule::Anything => true,
                Rule::AnythingBut(denied) => !denied.contains(&target),
            };
            let excepted = kind == "dev" && DEV_EXCEPTIONS.contains(&(name, target));
            if !ok && !excepted {
                violations.insert(format!("{name} -> {target}"), kind.to_owned());
            }
        }
    }
    assert!(violations.is_empty(), "dependencies pointing the wrong way: {violations:?}");
}
