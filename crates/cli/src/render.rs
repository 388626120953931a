//! Pure rendering: the exact lines supervisorctl 4.x prints and the exit codes
//! it sets, as functions of the RPC results. No I/O here,
//! so every string is pinned by a table test.

use vigil_rpc::{
    ConfigInfo, ControlError, ProcessResult, Reread, StatusRow, UpdateAction, UpdateReport,
};

/// LSB init-script exit codes, as supervisorctl uses them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure (a fault, a usage error of most commands).
    pub const GENERIC: i32 = 1;
    /// `start` without a name.
    pub const INVALID_ARGS: i32 = 2;
    /// LSB's "unimplemented feature".
    pub const UNIMPLEMENTED_FEATURE: i32 = 3;
    /// The connection was refused.
    pub const INSUFFICIENT_PRIVILEGES: i32 = 4;
    /// The daemon speaks another API version.
    pub const NOT_INSTALLED: i32 = 5;
    /// No such socket, or a process that should run does not.
    pub const NOT_RUNNING: i32 = 7;
    /// LSB status code of `status` when a listed process is not running.
    pub const STATUS_NOT_RUNNING: i32 = 3;
    /// LSB status code of `status` when the state cannot be known.
    pub const STATUS_UNKNOWN: i32 = 4;
}

/// supervisorctl's `set_exitstatus_from_xmlrpc_fault`: `None` leaves the exit
/// status as it is (success, or the fault the command ignores).
pub fn exit_for_fault(code: i32, ignored: Option<i32>) -> Option<i32> {
    const SPAWN_ERROR: i32 = 50;
    const ABNORMAL_TERMINATION: i32 = 40;
    const NOT_RUNNING: i32 = 70;
    if code == vigil_rpc::SUCCESS_CODE || Some(code) == ignored {
        None
    } else if [SPAWN_ERROR, ABNORMAL_TERMINATION, NOT_RUNNING].contains(&code) {
        Some(exit::NOT_RUNNING)
    } else {
        Some(exit::GENERIC)
    }
}

/// The status table (supervisorctl's `_show_statuses`): name column `max(30, longest) + 3` wide,
/// state column 10 wide, then the description. Widths count characters, as
/// Python's `%-Ns` does.
pub fn status_lines(rows: &[StatusRow]) -> Vec<String> {
    let names: Vec<String> = rows.iter().map(StatusRow::namespec).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(30) + 3;
    // Padded by hand: `format!`'s `{:<N}` writes its fill one character at a
    // time, a visible share of printing a 5,000-line table.
    let pad = |line: &mut String, used: usize, width: usize| {
        line.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    };
    rows.iter()
        .zip(names)
        .map(|(row, mut line)| {
            let used = line.chars().count();
            pad(&mut line, used, width);
            let statename = row.state.name();
            line.push_str(statename);
            pad(&mut line, statename.chars().count(), 10);
            line.push_str(&row.description);
            line
        })
        .collect()
}

/// Which command a [`ProcessResult`] line is for; each words success and
/// faults its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `start` (and the start phase of `restart`).
    Start,
    /// `stop` (and the stop phase of `restart`).
    Stop,
    /// `signal`.
    Signal,
    /// `clear`.
    Clear,
}

impl Action {
    /// The fault code this command does not count as a failure.
    fn ignored(self) -> Option<i32> {
        match self {
            Action::Start => Some(ControlError::AlreadyStarted(String::new()).code()),
            Action::Stop => Some(ControlError::NotRunning(String::new()).code()),
            Action::Signal | Action::Clear => None,
        }
    }

    /// The exit code for a group spec that matched no group.
    fn bad_group_exit(self) -> i32 {
        // supervisorctl's do_start treats it as bad arguments; the others as generic.
        if self == Action::Start { exit::INVALID_ARGS } else { exit::GENERIC }
    }
}

/// One result line and the exit status it sets (`None`: unchanged).
pub fn result_line(action: Action, result: &ProcessResult) -> (String, Option<i32>) {
    let name = result.namespec();
    let Some(error) = &result.error else {
        let done = match action {
            Action::Start => "started",
            Action::Stop => "stopped",
            Action::Signal => "signalled",
            Action::Clear => "cleared",
        };
        return (format!("{name}: {done}"), None);
    };
    if result.name.is_none() && matches!(error, ControlError::BadName(_)) {
        return (format!("{name}: ERROR (no such group)"), Some(action.bad_group_exit()));
    }
    let reason = match (action, error) {
        (_, ControlError::BadName(_)) => "no such process",
        (Action::Start, ControlError::NoFile(_)) => "no such file",
        (Action::Start, ControlError::NotExecutable(_)) => "file is not executable",
        (Action::Start, ControlError::AlreadyStarted(_)) => "already started",
        (Action::Start, ControlError::SpawnError(_)) => "spawn error",
        (Action::Start, ControlError::AbnormalTermination(_)) => "abnormal termination",
        (Action::Stop | Action::Signal, ControlError::NotRunning(_)) => "not running",
        (Action::Signal, ControlError::BadSignal(_)) => "bad signal name",
        (Action::Clear, ControlError::Failed(_)) => "failed",
        // supervisorctl prints a FAILED fault's own text for stop and signal.
        (Action::Stop | Action::Signal, ControlError::Failed(_)) => {
            return (error.to_string(), exit_for_fault(error.code(), action.ignored()));
        }
        // Codes supervisorctl has no wording for (it would raise): say what it was.
        _ => return (format!("{name}: ERROR ({error})"), Some(exit::GENERIC)),
    };
    (format!("{name}: ERROR ({reason})"), exit_for_fault(error.code(), action.ignored()))
}

/// `reread`'s lines: `name: available|changed|disappeared` sorted by name, or
/// `No config updates to processes`.
pub fn reread_lines(reread: &Reread) -> Vec<String> {
    let mut lines: Vec<(String, &str)> = Vec::new();
    for (names, word) in [
        (&reread.added, "available"),
        (&reread.changed, "changed"),
        (&reread.removed, "disappeared"),
    ] {
        lines.extend(names.iter().map(|n| (n.clone(), word)));
    }
    if lines.is_empty() {
        return vec!["No config updates to processes".to_owned()];
    }
    lines.sort();
    lines.into_iter().map(|(name, word)| format!("{name}: {word}")).collect()
}

/// Lines for a configuration that could not be read: one per error, with its
/// file and line.
pub fn cant_reread_lines(error: &ControlError) -> Vec<String> {
    match error {
        ControlError::ConfigErrors(lines) => {
            lines.iter().map(|l| format!("ERROR: CANT_REREAD: {l}")).collect()
        }
        other => vec![format!("ERROR: {other}")],
    }
}

/// `avail`'s line: `'%-32s %-9s %-9s %s'`.
pub fn avail_line(info: &ConfigInfo) -> String {
    let name = vigil_rpc::make_namespec(&info.group, &info.name);
    let inuse = if info.inuse { "in use" } else { "avail" };
    let auto = if info.autostart { "auto" } else { "manual" };
    format!("{name:<32} {inuse:<9} {auto:<9} {}:{}", info.group_prio, info.process_prio)
}

/// `update`'s lines and exit status, in supervisorctl's order: unknown names,
/// removals, changes, additions. A dry run words each line as a plan.
pub fn update_lines(report: &UpdateReport) -> (Vec<String>, i32) {
    update_lines_with_reasons(report, None)
}

/// [`update_lines`], and for a dry run given `reread`'s details, why each
/// changed process of a changed group would be restarted or changed in place
/// (`g: would restart p (command, env_file contents)`).
pub fn update_lines_with_reasons(
    report: &UpdateReport,
    details: Option<&Reread>,
) -> (Vec<String>, i32) {
    let mut lines = Vec::new();
    let mut status = exit::OK;
    let suffix = if report.dry_run { " (dry run)" } else { "" };
    for name in &report.unknown_groups {
        lines.push(format!("ERROR: no such group: {name}"));
        status = exit::GENERIC;
    }
    for step in &report.steps {
        let group = &step.group;
        match step.action {
            UpdateAction::Removed => {
                lines.push(format!("{group}: stopped{suffix}"));
                if step.error.is_some() {
                    lines.push(format!("{group}: has problems; not removing"));
                    status = exit::GENERIC;
                } else {
                    lines.push(format!("{group}: removed process group{suffix}"));
                }
            }
            UpdateAction::Updated => {
                if !step.stopped.is_empty() {
                    lines.push(format!("{group}: stopped{suffix}"));
                }
                let changes = details
                    .filter(|_| report.dry_run)
                    .and_then(|d| d.details.iter().find(|c| &c.group == group));
                for process in changes.iter().flat_map(|c| &c.processes) {
                    if process.fields.is_empty() {
                        continue;
                    }
                    let what =
                        if process.in_place { "would change in place" } else { "would restart" };
                    lines.push(format!(
                        "{group}: {what} {} ({})",
                        process.name,
                        process.fields.join(", ")
                    ));
                }
                match &step.error {
                    Some(error) => {
                        lines.push(format!("{group}: ERROR ({error})"));
                        status = exit::GENERIC;
                    }
                    None => lines.push(format!("{group}: updated process group{suffix}")),
                }
            }
            UpdateAction::Added => match &step.error {
                Some(error) => {
                    lines.push(format!("{group}: ERROR ({error})"));
                    status = exit::GENERIC;
                }
                None => lines.push(format!("{group}: added process group{suffix}")),
            },
        }
    }
    (lines, status)
}

/// Python's `cmd.Cmd.columnize`: as few rows as fit `width`, columns separated
/// by two spaces and padded to their widest entry.
pub fn columnize(items: &[&str], width: usize) -> Vec<String> {
    if items.is_empty() {
        return vec!["<empty>".to_owned()];
    }
    let n = items.len();
    for rows in 1..n {
        let cols = n.div_ceil(rows);
        let mut widths = Vec::new();
        let mut total = 0;
        for col in 0..cols {
            let w = (0..rows)
                .filter_map(|r| items.get(col * rows + r))
                .map(|s| s.len())
                .max()
                .unwrap_or(0);
            widths.push(w);
            total += w + 2;
            if total > width {
                break;
            }
        }
        if total <= width + 2 && widths.len() == cols {
            return (0..rows)
                .map(|r| {
                    let mut cells: Vec<String> = Vec::new();
                    for (col, w) in widths.iter().enumerate() {
                        if let Some(item) = items.get(col * rows + r) {
                            cells.push(format!("{item:<w$}"));
                        }
                    }
                    cells.join("  ")
                })
                .collect();
        }
    }
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vigil_rpc::{ProcessInfo, ProcessState, UpdateStep};

    /// A process as a test needs it, the rest empty (shared with `top`'s tests).
    pub(crate) fn info(
        group: &str,
        name: &str,
        state: ProcessState,
        description: &str,
    ) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            group: group.into(),
            start: 0,
            stop: 0,
            now: 0,
            state,
            statename: state.name().into(),
            spawnerr: Default::default(),
            exitstatus: 0,
            logfile: Default::default(),
            stdout_logfile: Default::default(),
            stderr_logfile: Default::default(),
            pid: 0,
            description: description.into(),
            health: None,
            waiting_for: Vec::new(),
        }
    }

    #[test]
    fn status_table_matches_supervisorctl_columns() {
        let infos = [
            info(
                "failer",
                "failer",
                ProcessState::Fatal,
                "Exited too quickly (process log may have details)",
            ),
            info("grp", "manual", ProcessState::Stopped, "Not started"),
            info("multi", "multi_00", ProcessState::Running, "pid 6059, uptime 0:00:12"),
            info("sleeper", "sleeper", ProcessState::Running, "pid 6061, uptime 0:00:12"),
            info("s", "s", ProcessState::Starting, ""),
        ];
        let infos: Vec<StatusRow> = infos.into_iter().map(StatusRow::from).collect();
        assert_eq!(
            status_lines(&infos),
            [
                "failer                           FATAL     Exited too quickly (process log may have details)",
                "grp:manual                       STOPPED   Not started",
                "multi:multi_00                   RUNNING   pid 6059, uptime 0:00:12",
                "sleeper                          RUNNING   pid 6061, uptime 0:00:12",
                "s                                STARTING  ",
            ]
        );
        // The state column starts at index 33 by default...
        assert_eq!(status_lines(&infos)[0].find("FATAL"), Some(33));
        // ...and moves right for a longer name (longest + 3).
        let long = "g:".to_owned() + &"x".repeat(38);
        let lines = status_lines(&[info("g", &"x".repeat(38), ProcessState::Running, "d").into()]);
        assert_eq!(lines[0], format!("{long}   RUNNING   d"));
    }

    #[test]
    fn result_lines_and_exit_codes_per_command() {
        use Action::*;
        let ok = ProcessResult::ok("app1", "app1");
        let r = |e: ControlError| ProcessResult::failed("g", Some("p".into()), e);
        let group = ProcessResult::failed("nog", None, ControlError::BadName("nog".into()));
        let s = String::new;
        let cases: Vec<(Action, ProcessResult, &str, Option<i32>)> = vec![
            (Start, ok.clone(), "app1: started", None),
            (Stop, ok.clone(), "app1: stopped", None),
            (Signal, ok.clone(), "app1: signalled", None),
            (Clear, ok.clone(), "app1: cleared", None),
            (Start, r(ControlError::BadName(s())), "g:p: ERROR (no such process)", Some(1)),
            (Start, r(ControlError::NoFile(s())), "g:p: ERROR (no such file)", Some(1)),
            (
                Start,
                r(ControlError::NotExecutable(s())),
                "g:p: ERROR (file is not executable)",
                Some(1),
            ),
            (Start, r(ControlError::AlreadyStarted(s())), "g:p: ERROR (already started)", None),
            (Start, r(ControlError::SpawnError(s())), "g:p: ERROR (spawn error)", Some(7)),
            (
                Start,
                r(ControlError::AbnormalTermination(s())),
                "g:p: ERROR (abnormal termination)",
                Some(7),
            ),
            (Start, group.clone(), "nog: ERROR (no such group)", Some(2)),
            (Stop, r(ControlError::BadName(s())), "g:p: ERROR (no such process)", Some(1)),
            (Stop, r(ControlError::NotRunning(s())), "g:p: ERROR (not running)", None),
            (Stop, r(ControlError::Failed("kill failed".into())), "FAILED: kill failed", Some(1)),
            (Stop, group.clone(), "nog: ERROR (no such group)", Some(1)),
            (
                Signal,
                r(ControlError::BadSignal("X".into())),
                "g:p: ERROR (bad signal name)",
                Some(1),
            ),
            (Signal, r(ControlError::NotRunning(s())), "g:p: ERROR (not running)", Some(7)),
            (Signal, r(ControlError::BadName(s())), "g:p: ERROR (no such process)", Some(1)),
            (Clear, r(ControlError::Failed(s())), "g:p: ERROR (failed)", Some(1)),
            (Clear, r(ControlError::BadName(s())), "g:p: ERROR (no such process)", Some(1)),
            (Start, r(ControlError::ShutdownState), "g:p: ERROR (SHUTDOWN_STATE)", Some(1)),
        ];
        for (action, result, line, status) in cases {
            assert_eq!(
                result_line(action, &result),
                (line.to_owned(), status),
                "{action:?} {result:?}"
            );
        }
    }

    #[test]
    fn reread_avail_and_update_wording() {
        let reread = Reread {
            added: vec!["newprog".into()],
            changed: vec!["sleeper".into()],
            removed: vec!["multi".into()],
            details: vec![],
        };
        assert_eq!(
            reread_lines(&reread),
            ["multi: disappeared", "newprog: available", "sleeper: changed"]
        );
        assert_eq!(reread_lines(&Reread::default()), ["No config updates to processes"]);

        let config = ConfigInfo {
            name: "manual".into(),
            group: "grp".into(),
            inuse: false,
            autostart: false,
            autorestart: "unexpected".into(),
            group_prio: 999,
            process_prio: 5,
            command: "/bin/x".into(),
            directory: None,
            uid: None,
            exitcodes: vec![0],
            killasgroup: false,
            stopasgroup: false,
            redirect_stderr: false,
            startretries: 3,
            startsecs: 1,
            stopsignal: 15,
            stopwaitsecs: 10,
            serverurl: "AUTO".into(),
            stdout: log(),
            stderr: log(),
        };
        assert_eq!(
            avail_line(&config),
            "grp:manual                       avail     manual    999:5"
        );

        let step = |group: &str, action, stopped: &[&str], error| UpdateStep {
            group: group.into(),
            action,
            stopped: stopped.iter().map(|s| (*s).to_owned()).collect(),
            started: vec![],
            changed_in_place: vec![],
            error,
        };
        let report = UpdateReport {
            dry_run: false,
            unknown_groups: vec!["nosuch".into()],
            steps: vec![
                step("multi", UpdateAction::Removed, &["multi_00"], None),
                step(
                    "stuck",
                    UpdateAction::Removed,
                    &["x"],
                    Some(ControlError::Failed("x".into())),
                ),
                step("sleeper", UpdateAction::Updated, &["sleeper"], None),
                step("tuned", UpdateAction::Updated, &[], None),
                step("newprog", UpdateAction::Added, &[], None),
            ],
        };
        let (lines, status) = update_lines(&report);
        assert_eq!(
            lines,
            [
                "ERROR: no such group: nosuch",
                "multi: stopped",
                "multi: removed process group",
                "stuck: stopped",
                "stuck: has problems; not removing",
                "sleeper: stopped",
                "sleeper: updated process group",
                "tuned: updated process group",
                "newprog: added process group",
            ]
        );
        assert_eq!(status, 1);
        let dry = UpdateReport {
            dry_run: true,
            unknown_groups: vec![],
            steps: vec![report.steps[4].clone()],
        };
        assert_eq!(
            update_lines(&dry),
            (vec!["newprog: added process group (dry run)".to_owned()], 0)
        );

        let errors = ControlError::ConfigErrors(vec![vigil_rpc::ConfigErrorLine {
            file: "/etc/s.conf".into(),
            line: 7,
            message: "unknown key 'comand'".into(),
        }]);
        assert_eq!(
            cant_reread_lines(&errors),
            ["ERROR: CANT_REREAD: /etc/s.conf:7: unknown key 'comand'"]
        );
        assert_eq!(
            cant_reread_lines(&ControlError::CantReread("boom".into())),
            ["ERROR: CANT_REREAD: boom"]
        );
    }

    fn log() -> vigil_rpc::LogSettings {
        vigil_rpc::LogSettings {
            logfile: "auto".into(),
            logfile_maxbytes: 0,
            logfile_backups: 0,
            capture_maxbytes: 0,
            events_enabled: false,
            syslog: false,
        }
    }

    #[test]
    fn exit_codes_for_faults() {
        assert_eq!(exit_for_fault(80, None), None);
        assert_eq!(exit_for_fault(60, Some(60)), None);
        assert_eq!(exit_for_fault(50, None), Some(7));
        assert_eq!(exit_for_fault(40, None), Some(7));
        assert_eq!(exit_for_fault(70, None), Some(7));
        assert_eq!(exit_for_fault(10, Some(60)), Some(1));
    }

    #[test]
    fn help_topics_are_columnized_like_python_cmd() {
        let topics = [
            "add", "avail", "clear", "exit", "fg", "maintail", "open", "pid", "quit", "reload",
            "remove", "reread", "restart", "shutdown", "signal", "start", "status", "stop", "tail",
            "update", "version",
        ];
        assert_eq!(
            columnize(&topics, 79),
            [
                "add    exit      open  reload  restart   start   tail   ",
                "avail  fg        pid   remove  shutdown  status  update ",
                "clear  maintail  quit  reread  signal    stop    version",
            ]
        );
    }
}
