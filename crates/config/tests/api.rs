//! The public API as other crates use it: loading from disk, includes, messages,
//! the summary line and the accept/reject rules of whole configs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_config::{Diagnostic, LoadOptions, LogTarget, load, load_str_with, summary};

fn env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("HOME".to_string(), "/home/vigil".to_string()),
        ("NAME".to_string(), "envname".to_string()),
    ])
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

fn load_text(text: &str) -> Result<vigil_config::Loaded, vigil_config::ConfigErrors> {
    let options = LoadOptions { host_node_name: "node1".into() };
    load_str_with(text, Path::new("/tmp/vigil-api-test.conf"), &env(), &options)
}

#[test]
fn diagnostic_display() {
    let full = Diagnostic {
        file: "vigil.conf".into(),
        line: Some(12),
        section: Some("program:web".into()),
        key: Some("startsecs".into()),
        message: "'abc' is not an integer".into(),
    };
    assert_eq!(full.to_string(), "vigil.conf:12: [program:web] startsecs: 'abc' is not an integer");
    let bare = Diagnostic {
        file: "x.conf".into(),
        line: None,
        section: None,
        key: None,
        message: "m".into(),
    };
    assert_eq!(bare.to_string(), "x.conf: m");
}

#[test]
fn every_error_at_once_one_per_line() {
    let errors = load_text(
        "[supervisord]\n[program:web]\ncommand=/bin/web\nstartsecs=abc\nautostart=maybe\n",
    )
    .expect_err("two bad values");
    let text = errors.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        lines[0],
        "/tmp/vigil-api-test.conf:4: [program:web] startsecs: 'abc' is not an integer"
    );
    assert!(
        lines[1].starts_with("/tmp/vigil-api-test.conf:5: [program:web] autostart: "),
        "{text}"
    );
}

#[test]
fn unknown_keys_warn_with_file_and_line() {
    let loaded =
        load_text("[supervisord]\n[program:web]\ncommand=/bin/web\nsocket=x\nfrobnicate=1\n")
            .expect("loads");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "/tmp/vigil-api-test.conf:4: [program:web] socket: unknown key (ignored); it is valid in [fcgi-program:x]",
            "/tmp/vigil-api-test.conf:5: [program:web] frobnicate: unknown key (ignored)",
        ]
    );
}

#[test]
fn summary_line() {
    let loaded = load_text(
        "[supervisord]\n[program:a]\ncommand=/bin/a\n[program:b]\ncommand=/bin/b\nprocess_name=b%(process_num)d\nnumprocs=3\n[program:c]\ncommand=/bin/c\n[group:g]\nprograms=a,c\n",
    )
    .expect("loads");
    assert_eq!(summary(&loaded.config), "config OK: 3 programs, 2 groups, 5 processes");
    let one = load_text("[supervisord]\n[program:a]\ncommand=/bin/a\n").expect("loads");
    assert_eq!(summary(&one.config), "config OK: 1 program, 1 group, 1 process");
}

#[test]
fn load_from_disk_with_includes_and_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = write(
        dir.path(),
        "etc/supervisord.conf",
        "[supervisord]\nlogfile=%(here)s/main.log\n[include]\nfiles=conf.d/*.conf conf.d/*.toml\n",
    );
    write(
        dir.path(),
        "etc/conf.d/20-b.conf",
        "[program:b]\ncommand=/bin/b\nstdout_logfile=%(here)s/b.log\n",
    );
    write(dir.path(), "etc/conf.d/10-a.conf", "[program:a]\ncommand=/bin/a %(ENV_NAME)s\n");
    write(dir.path(), "etc/conf.d/30-c.toml", "[program.c]\ncommand = [\"/bin/c\"]\n");
    let loaded = load(&root, &env()).expect("loads");
    let config = loaded.config;
    let etc = dir.path().join("etc");
    assert_eq!(config.source, root);
    assert_eq!(
        config.files,
        [
            root.clone(),
            etc.join("conf.d/10-a.conf"),
            etc.join("conf.d/20-b.conf"),
            etc.join("conf.d/30-c.toml")
        ]
    );
    assert_eq!(config.supervisord.logfile, LogTarget::Path(etc.join("main.log")));
    let b = config.processes().find(|p| p.name == "b").expect("b");
    assert_eq!(
        b.stdout.logfile,
        LogTarget::Path(etc.join("conf.d/b.log")),
        "here is the included file's dir"
    );
    assert_eq!(b.origin.file, etc.join("conf.d/20-b.conf"));
    let a = config.processes().find(|p| p.name == "a").expect("a");
    assert_eq!(a.command, ["/bin/a", "envname"]);
    assert!(config.processes().any(|p| p.name == "c"));
}

#[test]
fn errors_in_included_files_name_that_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = write(dir.path(), "main.conf", "[supervisord]\n[include]\nfiles=inc/*.ini\n");
    let inc = write(dir.path(), "inc/x.ini", "[program:x]\ncommand=/bin/x\nstartsecs=soon\n");
    let errors = load(&root, &env()).expect_err("bad value in include");
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(errors.errors[0].file, inc);
    assert_eq!(errors.errors[0].line, Some(3));
}

#[test]
fn bad_bytes_and_bad_lines_in_included_files_hide_no_other_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = write(dir.path(), "main.conf", "[supervisord]\n[include]\nfiles=inc/*.ini\n");
    let inc = dir.path().join("inc/x.ini");
    std::fs::create_dir_all(inc.parent().expect("parent")).expect("mkdir");
    std::fs::write(&inc, b"[program:x]\ncommand=/bin/\xff\nno separator\nstartsecs=soon\n")
        .expect("write");
    let errors = load(&root, &env()).expect_err("bad bytes in include");
    let found: Vec<(&Path, Option<u32>)> =
        errors.errors.iter().map(|e| (e.file.as_path(), e.line)).collect();
    assert_eq!(
        found,
        [(inc.as_path(), Some(2)), (inc.as_path(), Some(3)), (inc.as_path(), Some(4))]
    );
    assert!(errors.errors[0].message.contains("not valid UTF-8"), "{errors}");
    assert!(errors.errors[2].message.contains("'soon' is not an integer"), "{errors}");
}

#[test]
fn later_include_overrides_earlier_definition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = write(
        dir.path(),
        "main.conf",
        "[supervisord]\n[program:x]\ncommand=/bin/x\npriority=1\n[include]\nfiles=*.inc\n",
    );
    write(dir.path(), "over.inc", "[program:x]\npriority=7\n");
    let loaded = load(&root, &env()).expect("loads");
    let x = loaded.config.processes().next().expect("x");
    assert_eq!((x.command[0].as_str(), x.priority), ("/bin/x", 7));
}

#[test]
fn missing_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let errors = load(&dir.path().join("nope.conf"), &env()).expect_err("missing");
    assert!(errors.to_string().contains("could not read config file"), "{errors}");
}

#[test]
fn whole_config_rules() {
    // (config body after [supervisord], expected error substring or None).
    let cases: &[(&str, Option<&str>)] = &[
        ("[program:x]\ncommand=/bin/x\nnumprocs=2\nprocess_name=x_%(process_num)s", None),
        (
            "[program:x]\ncommand=/bin/x\nnumprocs=2",
            Some("%(process_num) must be present within process_name"),
        ),
        ("[program:x]\ncommand=/bin/x\nprocess_name=a b", Some("Invalid name: 'a b'")),
        ("[program:x:y]\ncommand=/bin/x", Some("Invalid name: 'x:y' because of character: ':'")),
        ("[program:x]\ncommand=/bin/x\nstopasgroup=true", None),
        (
            "[program:x]\ncommand=/bin/x\nstopasgroup=true\nkillasgroup=false",
            Some("Cannot set stopasgroup=true and killasgroup=false"),
        ),
        ("[program:x]\ncommand=/bin/x\nuser=root", None),
        ("[program:x]\ncommand=/bin/x\nuser=0", None),
        ("[program:x]\ncommand='/bin/x", Some("can't parse command")),
        ("[program:x]\ncommand=date +%s", Some("badly formatted")),
        ("[program:x]\ncommand=date +%%s", None),
        ("[program:x]\ncommand=/bin/%(host_node_name)s", None),
        ("[program:x]\ncommand=/bin/x\nstdout_logfile=/tmp/%(program_name)s.log", None),
        ("[program:x]\ncommand=/bin/x\nstdout_logfile=AUTO\nstdout_logfile_maxbytes=0", None),
        (
            "[eventlistener:x]\ncommand=/bin/x\nevents=TICK_5\nbuffer_size=0",
            Some("invalid buffer_size"),
        ),
        (
            "[fcgi-program:x]\ncommand=/bin/x\nsocket=unix://relative.sock",
            Some("is not an absolute path"),
        ),
        ("[fcgi-program:x]\ncommand=/bin/x\nsocket=udp://h:1", Some("Unknown socket format")),
        (
            "[fcgi-program:x]\ncommand=/bin/x\nsocket=tcp://h:1\nsocket_backlog=0",
            Some("Invalid socket_backlog"),
        ),
        (
            "[fcgi-program:x]\ncommand=/bin/x\nsocket=tcp://h:1\nsocket_owner=root",
            Some("only supported for unix sockets"),
        ),
        (
            "[program:x]\ncommand=/bin/x\n[group:g]\nprograms=x\n[group:h]\nprograms=x",
            Some("already a member of [group:g]"),
        ),
        (
            "[program:x]\ncommand=/bin/x\n[fcgi-program:x]\ncommand=/bin/x\nsocket=tcp://h:1\n[group:g]\nprograms=x",
            Some("ambiguous"),
        ),
        ("[inet_http_server]\nport=127.0.0.1:0", Some("is not a valid port number")),
        ("[inet_http_server]\nport=9001\nusername=u\npassword=p", None),
        (
            "[unix_http_server]\nfile=/tmp/s.sock\nchmod=999",
            Some("can not be converted to an octal type"),
        ),
        (
            "[unix_http_server]\nfile=/tmp/s.sock\nchown=no-such-user-vigil",
            Some("Invalid user name"),
        ),
        ("[supervisorctl]\nserverurl=ftp://x", Some("is not a valid serverurl")),
        (
            "[program:a]\ncommand=/bin/a\ndepends_on=b:healthy\n[program:b]\ncommand=/bin/b\nready_exec=/bin/check",
            None,
        ),
        ("[program:a]\ncommand=/bin/a\ndepends_on=a", Some("dependency cycle: a -> a")),
        (
            "[program:a]\ncommand=/bin/a\nready_tcp=:1\nready_http=http://x/",
            Some("only one ready probe may be set"),
        ),
        ("[program:a]\ncommand=/bin/a\nlive_log=x", Some("only supported for readiness")),
        ("[program:a]\ncommand=/bin/a\nready_http=ftp://x", Some("is not an http://")),
        (
            "[program:a]\ncommand=/bin/a\nbackoff_initial=10s\nbackoff_max=1s",
            Some("backoff_max must not be smaller"),
        ),
        ("[program:a]\ncommand=/bin/a\nmax_restarts=unlimited\nmax_restarts_period=10s", None),
        ("[program:a]\ncommand=/bin/a\nmax_restarts_period=0", Some("greater than zero")),
        ("[program:a]\ncommand=/bin/a\nstrategy=one_for_some", Some("is not a strategy")),
        // Expansion names by place (supervisord's read_config / processes_from_section).
        ("[supervisord]\nidentifier=%(program_name)s", Some("contains names ('program_name')")),
        ("[supervisord]\nidentifier=%(host_node_name)s", Some("contains names ('host_node_name')")),
        ("[supervisord]\nenvironment=H=%(host_node_name)s", None),
        ("[supervisord]\nidentifier=%(here)s-%(ENV_NAME)s", None),
        (
            "[program:x]\ncommand=/bin/x\nstartsecs=%(process_num)d",
            Some("contains names ('process_num')"),
        ),
        ("[program:x]\ncommand=/bin/x %(numprocs)d %(process_num)d", None),
        ("[program:x]\ncommand=/bin/x\nuser=%(ENV_NAME)s", Some("Invalid user name envname")),
        (
            "[program:x]\ncommand=/bin/x\n[group:g]\nprograms=%(ENV_NAME)s",
            Some("names unknown program or fcgi-program envname"),
        ),
        ("[fcgi-program:x]\ncommand=/bin/x\nsocket=unix:///tmp/%(program_name)s.sock", None),
        ("[unix_http_server]\nfile=%(program_name)s.sock", Some("contains names ('program_name')")),
    ];
    for (body, expected) in cases {
        let text = format!("[supervisord]\n{body}\n");
        match (load_text(&text), expected) {
            (Ok(_), None) => {}
            (Ok(_), Some(want)) => panic!("accepted but should fail with {want:?}:\n{body}"),
            (Err(errors), None) => panic!("rejected:\n{body}\n{errors}"),
            (Err(errors), Some(want)) => assert!(
                errors.to_string().contains(want),
                "{body}\nwanted {want:?}, got:\n{errors}"
            ),
        }
    }
}

#[test]
fn supervisord_environment_reaches_programs_as_env_keys() {
    let loaded = load_text("[supervisord]\nenvironment=K=v\n[program:x]\ncommand=/bin/%(ENV_K)s\nenvironment=P=%(ENV_K)s2\ndirectory=/%(ENV_P)s\n")
        .expect("loads");
    let x = loaded.config.processes().next().expect("x");
    assert_eq!(x.command, ["/bin/v"]);
    assert_eq!(x.environment.get("P").map(String::as_str), Some("v2"));
    assert_eq!(x.directory.as_deref(), Some(Path::new("/v2")));
    // The global environment is kept apart and merged at spawn time.
    assert!(!x.environment.contains_key("K"));
}

#[test]
fn probes_expand_per_instance_and_restart_dependents_defaults_on() {
    let loaded = load_text(
        "[supervisord]\n[program:api]\ncommand=/bin/api %(process_num)d\n\
         process_name=%(program_name)s_%(process_num)d\nnumprocs=2\n\
         ready_http=http://127.0.0.1:80%(process_num)02d/health\n\
         live_tcp=127.0.0.1:90%(process_num)02d\n",
    )
    .expect("loads");
    let processes = &loaded.config.groups[0].processes;
    let urls: Vec<String> = processes
        .iter()
        .map(|p| match &p.readiness.as_ref().expect("readiness").kind {
            vigil_config::ProbeKind::Http { url, .. } => url.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(urls, ["http://127.0.0.1:8000/health", "http://127.0.0.1:8001/health"]);
    let ports: Vec<u16> = processes
        .iter()
        .map(|p| match &p.liveness.as_ref().expect("liveness").kind {
            vigil_config::ProbeKind::Tcp { port, .. } => *port,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ports, [9000, 9001]);
    assert!(processes.iter().all(|p| p.restart_dependents));
}

/// `environment=` with `pairs` pairs `K0="v0",K1="v1",...` (TOML: an inline table).
fn many_pairs(pairs: usize, toml: bool) -> String {
    let (sep, eq) = if toml { (", ", " = ") } else { (",", "=") };
    let items: Vec<String> = (0..pairs).map(|i| format!("K{i}{eq}\"v{i}\"")).collect();
    if toml { format!("{{ {} }}", items.join(sep)) } else { items.join(sep) }
}

#[test]
fn an_environment_of_megabytes_loads_in_linear_time() {
    // About 8 MB per line. Parsing is linear and takes a few seconds in a debug
    // build; the quadratic version it guards against took minutes at a quarter of
    // this size, so the generous bound catches a change of complexity, not a slow
    // machine.
    const PAIRS: usize = 480_000;
    const BOUND: std::time::Duration = std::time::Duration::from_secs(60);
    let ini_pairs = many_pairs(PAIRS, false);
    let configs = [
        (
            "/tmp/env-test.conf",
            format!("[supervisord]\n[program:x]\ncommand=/bin/x\nenvironment={ini_pairs}\n"),
        ),
        (
            "/tmp/env-test.conf",
            format!("[supervisord]\nenvironment={ini_pairs}\n[program:x]\ncommand=/bin/x\n"),
        ),
        (
            "/tmp/env-test.toml",
            format!(
                "[supervisord]\n[program.x]\ncommand = \"/bin/x\"\nenvironment = {}\n",
                many_pairs(PAIRS, true)
            ),
        ),
    ];
    for (path, text) in configs {
        assert!(text.len() > 7 << 20, "{} bytes", text.len());
        let (tx, rx) = std::sync::mpsc::channel();
        // A thread, so that a regression fails at the bound instead of running on.
        std::thread::spawn(move || {
            let options = LoadOptions { host_node_name: "node1".into() };
            let _ = tx.send(load_str_with(&text, Path::new(path), &env(), &options));
        });
        let loaded = match rx.recv_timeout(BOUND) {
            Ok(result) => result.unwrap_or_else(|e| panic!("{path}: {e}")),
            Err(_) => panic!("{path}: {PAIRS} environment pairs did not load within {BOUND:?}"),
        };
        let x = loaded.config.processes().next().expect("x");
        let count = x.environment.len() + loaded.config.supervisord.environment.len();
        assert_eq!(count, PAIRS, "{path}");
        let last = format!("K{}", PAIRS - 1);
        let value = x.environment.get(&last).or(loaded.config.supervisord.environment.get(&last));
        assert_eq!(value.map(String::as_str), Some(format!("v{}", PAIRS - 1).as_str()), "{path}");
    }
}

#[test]
fn each_log_directory_is_checked_and_one_missing_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("logs")).expect("mkdir");
    let logs = dir.path().join("logs");
    let missing = dir.path().join("gone");
    let program = |name: &str, at: &Path| {
        format!(
            "[program:{name}]\ncommand=/bin/true\nstdout_logfile={}/{name}.out\n\
             stderr_logfile={}/{name}.err\n",
            at.display(),
            at.display()
        )
    };
    let options = LoadOptions { host_node_name: "node1".into() };
    let mut text = String::from("[supervisord]\n");
    for name in ["a", "b", "c"] {
        text.push_str(&program(name, &logs));
    }
    let root = dir.path().join("supervisord.conf");
    let loaded = load_str_with(&text, &root, &env(), &options).expect("one shared directory");
    assert_eq!(loaded.config.groups.len(), 3);
    // A directory seen to exist does not vouch for another one.
    text.push_str(&program("d", &missing));
    let errors = load_str_with(&text, &root, &env(), &options).expect_err("a missing directory");
    let text = errors.to_string();
    assert_eq!(text.lines().count(), 2, "{text}");
    for channel in ["out", "err"] {
        let path = missing.join(format!("d.{channel}"));
        let expected =
            format!("The directory named as part of the path {} does not exist", path.display());
        assert!(text.contains(&expected), "{text}");
    }
}

#[test]
fn a_sha_password_must_be_a_whole_sha1_in_hex() {
    let sha = "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8";
    for (password, valid) in [
        (format!("{{SHA}}{sha}"), true),
        (format!("{{SHA}}{}", sha.to_uppercase()), true),
        ("plain text".to_owned(), true),
        ("{SHA}abc".to_owned(), false),
        (format!("{{SHA}}+{}", &sha[1..]), false),
        (format!("{{SHA}}{sha}0"), false),
    ] {
        let text = format!(
            "[supervisord]\n[inet_http_server]\nport=127.0.0.1:9001\nusername=u\npassword={password}\n"
        );
        match load_text(&text) {
            Ok(_) => assert!(valid, "{password} was accepted"),
            Err(errors) => {
                assert!(!valid, "{password}: {errors}");
                assert_eq!(
                    errors.to_string(),
                    "/tmp/vigil-api-test.conf:5: [inet_http_server] password: '{SHA}' must be \
                     followed by the 40 hex digits of a SHA-1"
                );
            }
        }
    }
}
