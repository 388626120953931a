//! Parsing the `status` table that supervisorctl prints (and vigilctl copies).
//!
//! A line is `NAME STATE DESCRIPTION`, e.g.
//! `p000                             RUNNING   pid 123, uptime 0:00:05`.
//! Lines that are not in that shape (an error such as "no such file" while the
//! socket is not up yet) are skipped: for the harness they mean "not there".

use std::collections::BTreeMap;

/// supervisord's process state names.
pub const STATES: [&str; 8] =
    ["STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"];

/// One parsed line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLine {
    pub name: String,
    pub state: String,
    /// Present for a running process (`pid N,` in the description).
    pub pid: Option<i32>,
}

/// Parses the whole output of `status` into name -> line.
pub fn parse_status(text: &str) -> BTreeMap<String, ProcessLine> {
    text.lines().filter_map(parse_line).map(|l| (l.name.clone(), l)).collect()
}

/// Parses one line; `None` when it is not a process line.
pub fn parse_line(line: &str) -> Option<ProcessLine> {
    let mut words = line.split_whitespace();
    let name = words.next()?;
    let state = words.next()?;
    if !STATES.contains(&state) {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    let pid = rest
        .windows(2)
        .find(|w| w[0] == "pid")
        .and_then(|w| w[1].trim_end_matches(',').parse().ok());
    // A group member prints as `group:name`; the harness uses one program
    // per group, so the part after the colon is the program name.
    let name = name.rsplit_once(':').map_or(name, |(_, n)| n);
    Some(ProcessLine { name: name.to_owned(), state: state.to_owned(), pid })
}

/// Parses the output of `pid NAME`: a bare positive integer, else `None`.
pub fn parse_pid(text: &str) -> Option<i32> {
    text.trim().parse().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_line() {
        let l = parse_line("p000                             RUNNING   pid 123, uptime 0:00:05");
        assert_eq!(
            l,
            Some(ProcessLine { name: "p000".into(), state: "RUNNING".into(), pid: Some(123) })
        );
    }

    #[test]
    fn states_without_pid() {
        let l = parse_line("p001   FATAL     Exited too quickly (process log may have details)");
        assert_eq!(l.unwrap().pid, None);
        let l = parse_line("p002   STOPPED   Not started").unwrap();
        assert_eq!(l.state, "STOPPED");
        let l = parse_line("grp:p003   STARTING").unwrap();
        assert_eq!(l.name, "p003");
    }

    #[test]
    fn noise_is_skipped() {
        let text = "unix:///tmp/x/ctl.sock no such file\n\nerror: <class 'ConnectionRefusedError'>\n\
                    a RUNNING pid 7, uptime 0:00:01\n";
        let table = parse_status(text);
        assert_eq!(table.len(), 1);
        assert_eq!(table["a"].pid, Some(7));
    }

    #[test]
    fn pid_output() {
        assert_eq!(parse_pid("4711\n"), Some(4711));
        assert_eq!(parse_pid("0\n"), None);
        assert_eq!(parse_pid("ERROR (no such process)\n"), None);
    }
}
