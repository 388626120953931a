//! `diff(old, new)`: which groups and processes change, and how each change applies.

use std::collections::BTreeMap;
use std::path::Path;

use vigil_config::{Apply, Config, FieldChange, LoadOptions, diff, load_str_with};

fn config(text: &str) -> Config {
    let options = LoadOptions { host_node_name: "h".into() };
    load_str_with(text, Path::new("/tmp/vigil-diff.conf"), &BTreeMap::new(), &options)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

const BASE: &str = "
[supervisord]
[program:web]
command=/bin/web
stdout_logfile=NONE
stderr_logfile=NONE
[program:a]
command=/bin/a
stdout_logfile=NONE
stderr_logfile=NONE
[program:b]
command=/bin/b
stdout_logfile=NONE
stderr_logfile=NONE
[group:pair]
programs=a,b
";

fn changed(old: &str, new: &str) -> Vec<(String, String, Vec<FieldChange>)> {
    diff(&config(old), &config(new))
        .changed
        .into_iter()
        .flat_map(|g| g.changed.into_iter().map(move |p| (g.name.clone(), p.name, p.fields)))
        .collect()
}

fn field(key: &'static str, apply: Apply) -> FieldChange {
    FieldChange { key, apply }
}

#[test]
fn identical_configs_give_an_empty_plan() {
    assert!(diff(&config(BASE), &config(BASE)).is_empty());
    // Moving a section (different lines) is not a change.
    let moved = BASE.replace("[program:web]", "\n\n[program:web]");
    assert!(diff(&config(BASE), &config(&moved)).is_empty());
}

#[test]
fn groups_added_and_removed() {
    let new = BASE.replace("[program:web]\ncommand=/bin/web", "[program:api]\ncommand=/bin/api");
    let plan = diff(&config(BASE), &config(&new));
    assert_eq!(plan.added, ["api"]);
    assert_eq!(plan.removed, ["web"]);
    assert!(plan.changed.is_empty());
}

#[test]
fn in_place_and_restart_fields() {
    let table: &[(&str, &str, Vec<FieldChange>)] = &[
        ("command=/bin/web", "command=/bin/web --v2", vec![field("command", Apply::Restart)]),
        (
            "command=/bin/web",
            "command=/bin/web\nautorestart=true",
            vec![field("autorestart", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nstartretries=9",
            vec![field("startretries", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nexitcodes=0,3",
            vec![field("exitcodes", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nstopwaitsecs=1",
            vec![field("stopwaitsecs", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nstopsignal=INT",
            vec![field("stopsignal", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nenvironment=A=1",
            vec![field("environment", Apply::Restart)],
        ),
        ("command=/bin/web", "command=/bin/web\nuser=root", vec![field("user", Apply::Restart)]),
        (
            "command=/bin/web",
            "command=/bin/web\ndirectory=/",
            vec![field("directory", Apply::Restart)],
        ),
        ("command=/bin/web", "command=/bin/web\numask=077", vec![field("umask", Apply::Restart)]),
        (
            "command=/bin/web",
            "command=/bin/web\nredirect_stderr=true",
            vec![field("redirect_stderr", Apply::Restart)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nstdout_logfile_maxbytes=1KB",
            vec![field("stdout_logfile_maxbytes", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nstderr_logfile_backups=1",
            vec![field("stderr_logfile_backups", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nbackoff=exponential\nbackoff_max=9s",
            vec![field("backoff", Apply::InPlace), field("backoff_max", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nready_tcp=:1",
            vec![field("ready", Apply::Restart)],
        ),
        (
            "command=/bin/web\nready_tcp=:1",
            "command=/bin/web\nready_tcp=:1\nready_period=5s",
            vec![field("ready_timing", Apply::InPlace)],
        ),
        (
            "command=/bin/web",
            "command=/bin/web\nautostart=false\ncommand=/bin/x",
            vec![field("command", Apply::Restart), field("autostart", Apply::InPlace)],
        ),
    ];
    for (from, to, expected) in table {
        let old = BASE.replacen("command=/bin/web", from, 1);
        let new = BASE.replacen("command=/bin/web", to, 1);
        let changes = changed(&old, &new);
        assert_eq!(changes.len(), 1, "{to}: {changes:?}");
        let (group, process, fields) = &changes[0];
        assert_eq!((group.as_str(), process.as_str()), ("web", "web"));
        assert_eq!(fields, expected, "{from} -> {to}");
    }
}

#[test]
fn log_path_change_needs_restart() {
    let new = BASE.replacen(
        "command=/bin/web\nstdout_logfile=NONE",
        "command=/bin/web\nstdout_logfile=/tmp/web.log",
        1,
    );
    let changes = changed(BASE, &new);
    assert_eq!(changes[0].2, vec![field("stdout_logfile", Apply::Restart)]);
    let plan = diff(&config(BASE), &config(&new));
    assert!(plan.changed[0].changed[0].needs_restart());
}

#[test]
fn a_change_in_a_heterogeneous_group_touches_that_program_only() {
    let new = BASE.replace("command=/bin/a", "command=/bin/a2");
    let plan = diff(&config(BASE), &config(&new));
    assert_eq!(plan.changed.len(), 1);
    let group = &plan.changed[0];
    assert_eq!(group.name, "pair");
    assert!(!group.restart_all && group.fields.is_empty());
    assert_eq!(group.changed.len(), 1);
    assert_eq!(group.changed[0].name, "a");
    assert!(group.added.is_empty() && group.removed.is_empty());
}

#[test]
fn numprocs_change_adds_and_removes_instances() {
    let old = BASE.replace(
        "command=/bin/web",
        "command=/bin/web\nprocess_name=web_%(process_num)d\nnumprocs=3",
    );
    let new = BASE.replace(
        "command=/bin/web",
        "command=/bin/web\nprocess_name=web_%(process_num)d\nnumprocs=4\nnumprocs_start=1",
    );
    let plan = diff(&config(&old), &config(&new));
    let web = plan.changed.iter().find(|g| g.name == "web").expect("web changed");
    assert_eq!(web.added, ["web_3", "web_4"]);
    assert_eq!(web.removed, ["web_0"]);
    let fields: Vec<_> = web.changed.iter().map(|p| (p.name.as_str(), p.needs_restart())).collect();
    // web_1 and web_2 keep their process_num; numprocs alone applies in place.
    assert_eq!(fields, [("web_1", false), ("web_2", false)]);
}

#[test]
fn group_settings_and_daemon_sections() {
    let new = BASE
        .replace("programs=a,b", "programs=a,b\npriority=5\nstrategy=one_for_all")
        .replace("[supervisord]", "[supervisord]\nloglevel=debug");
    let plan = diff(&config(BASE), &config(&new));
    let pair = plan.changed.iter().find(|g| g.name == "pair").expect("pair changed");
    assert_eq!(
        pair.fields,
        vec![field("priority", Apply::InPlace), field("strategy", Apply::InPlace)]
    );
    assert!(pair.changed.is_empty());
    assert_eq!(plan.daemon, ["supervisord"]);
}

#[test]
fn kind_change_restarts_the_whole_group() {
    let new = BASE.replace(
        "[program:web]\ncommand=/bin/web",
        "[fcgi-program:web]\ncommand=/bin/web\nsocket=tcp://127.0.0.1:9000",
    );
    let plan = diff(&config(BASE), &config(&new));
    let web = plan.changed.iter().find(|g| g.name == "web").expect("web changed");
    assert!(web.restart_all);
    assert_eq!(web.fields, vec![field("socket", Apply::Restart)]);
}
