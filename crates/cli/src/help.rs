//! `help <command>` texts.

/// The help lines of a command, `None` for an unknown one.
pub fn text(command: &str) -> Option<&'static [&'static str]> {
    Some(match command {
        "add" => &["add <name> [...]\tActivate the named groups from the last-read config"],
        "avail" => &["avail\t\t\tList every process of the last-read config"],
        "clear" => &[
            "clear <name>\t\tEmpty a process's log files",
            "clear <name> <name>\tEmpty the log files of several processes",
            "clear all\t\tEmpty the log files of every process",
        ],
        "exit" => &["exit\tLeave the vigilctl shell."],
        "quit" => &["quit\tLeave the vigilctl shell."],
        "fg" => &[
            "fg <process>\tAttach to a running process (stdin, stdout, stderr)",
            "\t\tCtrl-C detaches",
        ],
        "maintail" => &[
            "maintail -f \tFollow the daemon's main log (Ctrl-C to stop)",
            "maintail -100\tThe last 100 *bytes* of the daemon's main log",
            "maintail\tThe last 1600 *bytes* of the daemon's main log",
        ],
        "open" => {
            &["open <url>\tTalk to another vigild", "\t\t(unix:///socket/path or http://host:port)"]
        }
        "pid" => &[
            "pid\t\t\tThe daemon's pid",
            "pid <name>\t\tThe pid of one process (0 when not running)",
            "pid all\t\t\tThe pid of every process, one per line",
        ],
        "reload" => &["reload \t\tRestart the daemon in place (stops every process)"],
        "remove" => &["remove <name> [...]\tDeactivate stopped groups"],
        "reread" => &["reread \t\t\tRe-read the config and show what changed, applying nothing"],
        "restart" => &[
            "restart <name>\t\tRestart a process",
            "restart <gname>:*\tRestart every process of a group",
            "restart <name> <name>\tRestart several processes or groups",
            "restart all\t\tRestart every process",
            "Note: restart does not re-read the config; use reread and update for that.",
        ],
        "shutdown" => &["shutdown \tStop every process and the daemon."],
        "signal" => &[
            "signal <signal name> <name>\t\tSend a signal to a process",
            "signal <signal name> <gname>:*\t\tSend a signal to every process of a group",
            "signal <signal name> <name> <name>\tSend a signal to several processes or groups",
            "signal <signal name> all\t\tSend a signal to every process",
        ],
        "start" => &[
            "start <name>\t\tStart a process",
            "start <gname>:*\t\tStart every process of a group",
            "start <name> <name>\tStart several processes or groups",
            "start all\t\tStart every process",
        ],
        "status" => &[
            "status <name>\t\tStatus of one process",
            "status <gname>:*\tStatus of every process of a group",
            "status <name> <name>\tStatus of several processes",
            "status\t\t\tStatus of every process",
        ],
        "stop" => &[
            "stop <name>\t\tStop a process",
            "stop <gname>:*\t\tStop every process of a group",
            "stop <name> <name>\tStop several processes or groups",
            "stop all\t\tStop every process",
        ],
        "tail" => &[
            "tail [-f] <name> [stdout|stderr] (default stdout)",
            "Ex:",
            "tail -f <name>\t\tFollow a process's stdout (Ctrl-C to stop)",
            "tail -100 <name>\tThe last 100 *bytes* of a process's stdout",
            "tail <name> stderr\tThe last 1600 *bytes* of a process's stderr",
        ],
        "update" => &[
            "update\t\t\tRe-read the config and apply what changed: start added programs,",
            "\t\t\tstop removed ones, restart changed ones; others keep running",
            "update all\t\tThe same",
            "update <gname> [...]\tApply the changes of the named groups only",
            "update --dry-run [...]\tShow what update would do, changing nothing",
        ],
        "version" => &["version\t\t\tThe version of the remote vigild"],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_has_help() {
        for command in crate::ctl::COMMANDS {
            assert!(super::text(command).is_some(), "{command}");
        }
    }
}
