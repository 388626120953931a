//! What a child sees, as under supervisord: its environment, including the
//! `SUPERVISOR_*` variables existing programs rely on, its directory, umask and
//! user.

use std::collections::BTreeMap;
use std::ffi::CString;

use vigil_integration::{Program, Sandbox, current_user, is_root};

use crate::{out_lines, wait_out_line};

/// uid, gid and sorted supplementary groups of `name`, as `--print-ids` prints them.
fn ids_of(name: &str) -> (u32, u32, String) {
    let user = nix::unistd::User::from_name(name).unwrap().expect("user exists");
    let c_name = CString::new(name).unwrap();
    let mut groups: Vec<u32> =
        nix::unistd::getgrouplist(&c_name, user.gid).unwrap().iter().map(|g| g.as_raw()).collect();
    groups.sort_unstable();
    groups.dedup();
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    (user.uid.as_raw(), user.gid.as_raw(), groups.join(","))
}

#[test]
fn child_sees_environment_directory_umask_and_user() {
    let sandbox = Sandbox::new();
    let work = sandbox.join("work");
    std::fs::create_dir(&work).unwrap();
    // Running as root, user= really switches; otherwise supervisord only
    // accepts naming the current user.
    let user = if is_root() { "nobody".to_owned() } else { current_user() };
    let body = sandbox.programs_text(&[Program::child(
        "envprog",
        &[
            "--print-env",
            "SUPERVISOR_ENABLED",
            "--print-env",
            "SUPERVISOR_PROCESS_NAME",
            "--print-env",
            "SUPERVISOR_GROUP_NAME",
            "--print-env",
            "SUPERVISOR_SERVER_URL",
            "--print-env",
            "FROM_PROGRAM",
            "--print-env",
            "FROM_DAEMON",
            "--print-ids",
            "--sleep",
            "3600",
        ],
    )
    .set("startsecs", 0)
    .set("environment", "FROM_PROGRAM=\"a b,c\"")
    .set("directory", work.display())
    .set("umask", "027")
    .set("user", &user)]);
    sandbox.write_config_text(&format!("{body}\n[group:grp]\nprograms=envprog\n"));
    let env = BTreeMap::from([("FROM_DAEMON".to_owned(), "inherited".to_owned())]);
    let daemon = sandbox.start_with(&[], &env);
    let pid = daemon.running_pid("grp:envprog");
    let ids = wait_out_line(&sandbox, "envprog", "uid=");
    let lines = out_lines(&sandbox, "envprog");
    let expected_env = [
        "SUPERVISOR_ENABLED=1".to_owned(),
        "SUPERVISOR_PROCESS_NAME=envprog".to_owned(),
        "SUPERVISOR_GROUP_NAME=grp".to_owned(),
        format!("SUPERVISOR_SERVER_URL={}", sandbox.server_url()),
        "FROM_PROGRAM=a b,c".to_owned(),
        "FROM_DAEMON=inherited".to_owned(),
    ];
    assert_eq!(&lines[..6], &expected_env, "{lines:?}");
    let (uid, gid, groups) = ids_of(&user);
    assert_eq!(
        format!("uid={ids}"),
        format!("uid={uid} gid={gid} groups={groups} umask=0027 cwd={}", work.display())
    );
    assert_eq!(vigil_integration::procfs::cwd(pid).unwrap(), work);
}

#[test]
fn supervisord_environment_applies_to_every_program() {
    let sandbox = Sandbox::new();
    sandbox.supervisord_key("environment", "GLOBAL_ONE=1,SHARED=global");
    sandbox.write_config(&[Program::child(
        "envprog",
        &["--print-env", "GLOBAL_ONE", "--print-env", "SHARED", "--sleep", "3600"],
    )
    .set("startsecs", 0)
    .set("environment", "SHARED=program")]);
    let daemon = sandbox.start();
    daemon.running_pid("envprog");
    wait_out_line(&sandbox, "envprog", "SHARED=");
    assert_eq!(out_lines(&sandbox, "envprog"), ["GLOBAL_ONE=1", "SHARED=program"]);
}

/// A child starts clean: only fds 0-2 open (no control socket, log or pipe of
/// vigild leaks in), no signal ignored or blocked (vigild's own SIGPIPE
/// disposition and its threads' masks must not be inherited).
#[test]
fn child_starts_with_clean_fds_and_signals() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "clean",
        &["--print-fds", "--print-sigign", "--print-sigblk", "--sleep", "3600"],
    )
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("clean");
    wait_out_line(&sandbox, "clean", "sigblk=");
    let lines = out_lines(&sandbox, "clean");
    assert_eq!(lines[0], "fds=0,1,2");
    assert_eq!(lines[2], "sigblk=0000000000000000");
    let ignored = u64::from_str_radix(lines[1].strip_prefix("sigign=").unwrap(), 16).unwrap();
    // Not vigild's doing: the helper is a Rust program, whose runtime ignores
    // SIGPIPE (bit 12) before main; glibc reserves signals 32 and 33 (bits 31
    // and 32), which its sigaction refuses to reset, so a disposition inherited
    // from whoever started vigild (this test process under cargo) shows through.
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = (1u64 << 12) | (1 << 31) | (1 << 32);
    assert_eq!(ignored & !allowed, 0, "child ignores {ignored:#x}; this test process: {ours}");
}

/// `%%` is a literal percent in `command=` and `environment=`, and
/// `%(ENV_X)s` expands from the daemon's environment (supervisord's
/// issue-291a, issue-986, issue-550 fixtures).
#[test]
fn percent_escapes_and_env_expansion() {
    let sandbox = Sandbox::new();
    let child = vigil_integration::child_bin().display().to_string();
    sandbox.write_config(&[
        // Program::child escapes `%` itself: `100%` reaches the config as `100%%`.
        Program::child("pct", &["--echo", "100%", "--print-env", "RATIO", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("environment", "RATIO=\"50%%\""),
        Program::raw("expanded", &format!("{child} --echo %(ENV_VIGIL_IT_WORD)s --sleep 3600"))
            .set("startsecs", 0),
    ]);
    let env = BTreeMap::from([("VIGIL_IT_WORD".to_owned(), "from-the-daemon-env".to_owned())]);
    let daemon = sandbox.start_with(&[], &env);
    daemon.running_pid("pct");
    daemon.running_pid("expanded");
    wait_out_line(&sandbox, "pct", "RATIO=");
    assert_eq!(out_lines(&sandbox, "pct"), ["100%", "RATIO=50%"]);
    wait_out_line(&sandbox, "expanded", "from-the-daemon-env");
}

/// vigild raises its own descriptor limit (five per program: three pipes, two
/// logs), but a child starts with the limit vigild was started with, as under
/// supervisord: programs that size tables by it must not see a huge value.
#[test]
fn children_keep_the_file_limit_the_daemon_started_with() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("p", &["--sleep", "3600"]).set("startsecs", 0)]);
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    // Above minfds (1024), so vigild's minfds check leaves it alone.
    let started_with = 2048.min(hard);
    let daemon = sandbox.start_with_file_limit(started_with);
    let child = daemon.running_pid("p");
    let open_files = |pid: i32| -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
        let numbers: Vec<u64> =
            line.split_whitespace().filter_map(|word| word.parse().ok()).collect();
        (numbers[0], numbers[1])
    };
    let (daemon_soft, daemon_hard) = open_files(daemon.pid());
    assert!(daemon_soft >= hard && daemon_hard >= hard, "vigild raised its limit: {daemon_soft}");
    assert_eq!(open_files(child), (started_with, hard), "the child's limit");
}
