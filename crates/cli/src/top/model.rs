//! What `vigilctl top` shows, without a terminal: the rows made from the
//! daemon's facts, their order and filter, the selection, CPU rates between
//! two refreshes and the log pane's lines. Pure, so it is tested directly.

use std::collections::HashMap;
use std::time::Instant;

use vigil_rpc::{Facts, Health, ProcessFacts, ProcessState};

/// Lines the log pane keeps; older ones scroll away.
pub(crate) const LOG_LINES: usize = 500;

/// A column the table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortKey {
    /// `group:name`.
    Name,
    /// The state, in supervisord's code order (STOPPED first).
    State,
    /// The pid (0 when not running).
    Pid,
    /// Time since the start, for running processes.
    Uptime,
    /// CPU use between the last two refreshes.
    Cpu,
    /// Resident memory.
    Rss,
    /// Restarts since the daemon started.
    Restarts,
}

impl SortKey {
    /// Every key, in the order `o` cycles through them.
    pub(crate) const ALL: [SortKey; 7] = [
        SortKey::Name,
        SortKey::State,
        SortKey::Pid,
        SortKey::Uptime,
        SortKey::Cpu,
        SortKey::Rss,
        SortKey::Restarts,
    ];

    /// The column's heading.
    pub(crate) fn title(self) -> &'static str {
        match self {
            SortKey::Name => "NAME",
            SortKey::State => "STATE",
            SortKey::Pid => "PID",
            SortKey::Uptime => "UPTIME",
            SortKey::Cpu => "CPU%",
            SortKey::Rss => "RSS",
            SortKey::Restarts => "RESTARTS",
        }
    }

    fn next(self) -> SortKey {
        let at = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        SortKey::ALL[(at + 1) % SortKey::ALL.len()]
    }
}

/// One process as a table row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// `name` or `group:name`, what the control calls take.
    pub(crate) namespec: String,
    /// The process's state.
    pub(crate) state: ProcessState,
    /// Probe verdict, dependency wait or `-`.
    pub(crate) health: String,
    /// Ready as `/readyz` counts it.
    pub(crate) ready: bool,
    /// 0 when not running.
    pub(crate) pid: u32,
    /// Seconds since the start, for a running process.
    pub(crate) uptime: Option<i64>,
    /// Percent of one CPU since the previous refresh; `None` before a second
    /// sample of the same child.
    pub(crate) cpu_percent: Option<f64>,
    /// Resident memory of the child.
    pub(crate) rss: Option<u64>,
    /// Restarts since the daemon started.
    pub(crate) restarts: u64,
}

/// A CPU sample of one child.
#[derive(Debug, Clone, Copy)]
struct Sample {
    pid: u32,
    cpu_us: u64,
    at: Instant,
}

/// The whole view's state.
#[derive(Debug)]
pub(crate) struct Model {
    rows: Vec<Row>,
    /// Indexes into `rows` that pass the filter, in display order.
    shown: Vec<usize>,
    /// The selected process, kept across refreshes by name.
    selected: Option<String>,
    pub(crate) sort: SortKey,
    pub(crate) descending: bool,
    pub(crate) filter: String,
    /// True while `/` is collecting the filter.
    pub(crate) editing_filter: bool,
    samples: HashMap<String, Sample>,
    /// The daemon line: version, pid, uptime.
    pub(crate) daemon: String,
    /// The last action's outcome or an error, shown in the footer.
    pub(crate) message: String,
    /// The followed log: its process and channel.
    pub(crate) log_name: Option<String>,
    pub(crate) log_stderr: bool,
    log: Vec<String>,
    /// An unfinished last line.
    log_partial: String,
}

impl Model {
    pub(crate) fn new() -> Model {
        Model {
            rows: Vec::new(),
            shown: Vec::new(),
            selected: None,
            sort: SortKey::Name,
            descending: false,
            filter: String::new(),
            editing_filter: false,
            samples: HashMap::new(),
            daemon: String::new(),
            message: String::new(),
            log_name: None,
            log_stderr: false,
            log: Vec::new(),
            log_partial: String::new(),
        }
    }

    /// Takes a new set of facts received at `at`.
    pub(crate) fn update(&mut self, facts: &Facts, at: Instant) {
        let daemon = &facts.daemon;
        self.daemon = format!(
            "vigild {} pid {} up {}",
            daemon.version,
            daemon.pid,
            compact_duration(daemon.now.saturating_sub(daemon.started))
        );
        let mut samples = HashMap::with_capacity(facts.processes.len());
        self.rows = facts
            .processes
            .iter()
            .map(|process| {
                let namespec = process.info.namespec();
                let cpu_percent = process.usage.and_then(|usage| {
                    let cpu_us = usage.cpu_user_us.saturating_add(usage.cpu_system_us);
                    let sample = Sample { pid: process.info.pid, cpu_us, at };
                    let previous = self.samples.get(&namespec).copied();
                    samples.insert(namespec.clone(), sample);
                    let previous = previous.filter(|p| p.pid == sample.pid)?;
                    let wall = at.checked_duration_since(previous.at)?.as_micros();
                    // Too close together to say anything.
                    if wall < 100_000 {
                        return None;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let percent =
                        cpu_us.saturating_sub(previous.cpu_us) as f64 * 100.0 / wall as f64;
                    Some(percent)
                });
                row(process, namespec, cpu_percent)
            })
            .collect();
        // Keep the last sample of a child sampled too recently to rate, so the
        // next refresh still has a base.
        for (name, sample) in samples {
            match self.samples.get(&name) {
                Some(old)
                    if old.pid == sample.pid
                        && sample.at.duration_since(old.at).as_millis() < 100 => {}
                _ => {
                    self.samples.insert(name, sample);
                }
            }
        }
        let names: std::collections::HashSet<&str> =
            self.rows.iter().map(|r| r.namespec.as_str()).collect();
        self.samples.retain(|name, _| names.contains(name.as_str()));
        self.arrange();
    }

    /// Sorts and filters again, keeping the selection when it is still shown.
    fn arrange(&mut self) {
        let needle = self.filter.to_lowercase();
        let mut shown: Vec<usize> = (0..self.rows.len())
            .filter(|&i| {
                let row = &self.rows[i];
                needle.is_empty()
                    || row.namespec.to_lowercase().contains(&needle)
                    || row.state.name().to_lowercase().contains(&needle)
            })
            .collect();
        let rows = &self.rows;
        let key = self.sort;
        shown.sort_by(|&a, &b| {
            let (a, b) = (&rows[a], &rows[b]);
            let order = match key {
                SortKey::Name => std::cmp::Ordering::Equal,
                SortKey::State => a.state.code().cmp(&b.state.code()),
                SortKey::Pid => a.pid.cmp(&b.pid),
                SortKey::Uptime => a.uptime.cmp(&b.uptime),
                SortKey::Cpu => {
                    a.cpu_percent.unwrap_or(-1.0).total_cmp(&b.cpu_percent.unwrap_or(-1.0))
                }
                SortKey::Rss => a.rss.cmp(&b.rss),
                SortKey::Restarts => a.restarts.cmp(&b.restarts),
            };
            // Ties (and the name column) in name order.
            order.then_with(|| a.namespec.cmp(&b.namespec))
        });
        if self.descending {
            shown.reverse();
        }
        self.shown = shown;
        let still_shown = self
            .selected
            .as_ref()
            .is_some_and(|name| self.shown.iter().any(|&i| self.rows[i].namespec == *name));
        if !still_shown {
            self.selected = self.shown.first().map(|&i| self.rows[i].namespec.clone());
        }
    }

    /// The rows shown, in order.
    pub(crate) fn shown(&self) -> impl ExactSizeIterator<Item = &Row> {
        self.shown.iter().map(|&i| &self.rows[i])
    }

    /// How many processes there are, and how many are RUNNING.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let running = self.rows.iter().filter(|r| r.state == ProcessState::Running).count();
        (self.rows.len(), running)
    }

    /// The selected row's position among the shown rows.
    pub(crate) fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_ref()?;
        self.shown.iter().position(|&i| self.rows[i].namespec == *name)
    }

    /// The selected process's namespec.
    pub(crate) fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// Moves the selection by `delta` rows (clamped).
    pub(crate) fn move_selection(&mut self, delta: isize) {
        if self.shown.is_empty() {
            return;
        }
        let last = self.shown.len() - 1;
        let at = self.selected_index().unwrap_or(0);
        let to = at.saturating_add_signed(delta).min(last);
        self.selected = Some(self.rows[self.shown[to]].namespec.clone());
    }

    /// Selects the first (`false`) or last (`true`) shown row.
    pub(crate) fn select_end(&mut self, last: bool) {
        let pick = if last { self.shown.last() } else { self.shown.first() };
        if let Some(&i) = pick {
            self.selected = Some(self.rows[i].namespec.clone());
        }
    }

    /// Sorts by the next column.
    pub(crate) fn next_sort(&mut self) {
        self.sort = self.sort.next();
        self.arrange();
    }

    /// Reverses the order.
    pub(crate) fn reverse_sort(&mut self) {
        self.descending = !self.descending;
        self.arrange();
    }

    /// Changes the filter (typing `/`).
    pub(crate) fn set_filter(&mut self, filter: String) {
        self.filter = filter;
        self.arrange();
    }

    /// Starts a new log pane for `name`.
    pub(crate) fn follow_log(&mut self, name: Option<String>, stderr: bool) {
        self.log_name = name;
        self.log_stderr = stderr;
        self.log.clear();
        self.log_partial.clear();
    }

    /// Adds output to the log pane, line by line; control characters other than
    /// tabs are dropped so a program cannot drive the terminal.
    pub(crate) fn push_log(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for c in text.chars() {
            match c {
                '\n' => {
                    let line = std::mem::take(&mut self.log_partial);
                    self.log.push(line);
                }
                '\t' => self.log_partial.push_str("    "),
                c if c.is_control() => {}
                c => self.log_partial.push(c),
            }
        }
        if self.log.len() > LOG_LINES {
            let extra = self.log.len() - LOG_LINES;
            self.log.drain(..extra);
        }
    }

    /// The last `n` lines of the log pane, oldest first (the unfinished line
    /// last).
    pub(crate) fn log_tail(&self, n: usize) -> Vec<&str> {
        let partial = (!self.log_partial.is_empty()).then_some(self.log_partial.as_str());
        let all: Vec<&str> = self.log.iter().map(String::as_str).chain(partial).collect();
        all[all.len().saturating_sub(n)..].to_vec()
    }
}

fn row(process: &ProcessFacts, namespec: String, cpu_percent: Option<f64>) -> Row {
    let info = &process.info;
    let health = if !info.waiting_for.is_empty() {
        format!("waiting for {}", info.waiting_for.join(", "))
    } else {
        match &info.health {
            None => "-".to_owned(),
            Some(Health::Unknown) => "unknown".to_owned(),
            Some(Health::Healthy) => "healthy".to_owned(),
            Some(Health::Unhealthy { .. }) => "unhealthy".to_owned(),
        }
    };
    let running = info.state == ProcessState::Running;
    Row {
        namespec,
        state: info.state,
        health,
        ready: process.is_ready(),
        pid: info.pid,
        uptime: running.then(|| info.now.saturating_sub(info.start)),
        cpu_percent,
        rss: process.usage.map(|usage| usage.rss_bytes),
        restarts: process.restarts,
    }
}

/// `45s`, `12m03s`, `3h07m`, `2d04h`.
pub(crate) fn compact_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Bytes with a binary unit: `812K`, `14.2M`, `1.05G`.
pub(crate) fn compact_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    #[allow(clippy::cast_precision_loss)]
    let scaled = |unit: u64| bytes as f64 / unit as f64;
    match bytes {
        0..KIB => format!("{bytes}B"),
        KIB..1_048_576 => format!("{}K", bytes / KIB),
        1_048_576..1_073_741_824 => format!("{:.1}M", scaled(1_048_576)),
        _ => format!("{:.2}G", scaled(1_073_741_824)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vigil_rpc::{DaemonFacts, Usage};

    use super::*;

    fn process(
        group: &str,
        name: &str,
        state: ProcessState,
        pid: u32,
        cpu_us: u64,
    ) -> ProcessFacts {
        let mut info = crate::render::tests::info(group, name, state, "");
        (info.start, info.now, info.pid) = (1000, 1100, pid);
        ProcessFacts {
            info,
            autostart: true,
            completed: false,
            restarts: u64::from(pid % 7),
            last_exit: None,
            usage: (pid != 0).then_some(Usage {
                cpu_user_us: cpu_us,
                cpu_system_us: 0,
                rss_bytes: u64::from(pid) * 1024,
            }),
            stdout_bytes: 0,
            stderr_bytes: 0,
        }
    }

    fn facts(processes: Vec<ProcessFacts>) -> Facts {
        Facts {
            daemon: DaemonFacts {
                version: "0.1.0".into(),
                pid: 1,
                started: 0,
                now: 3700,
                config_generation: 1,
                reloads: 0,
            },
            processes,
        }
    }

    fn names(model: &Model) -> Vec<&str> {
        model.shown().map(|r| r.namespec.as_str()).collect()
    }

    #[test]
    fn rows_sort_filter_and_keep_the_selection() {
        let mut model = Model::new();
        let t0 = Instant::now();
        model.update(
            &facts(vec![
                process("web", "web", ProcessState::Running, 30, 0),
                process("db", "db", ProcessState::Stopped, 0, 0),
                process("jobs", "a", ProcessState::Running, 10, 0),
            ]),
            t0,
        );
        assert_eq!(model.daemon, "vigild 0.1.0 pid 1 up 1h01m");
        assert_eq!(names(&model), ["db", "jobs:a", "web"]);
        assert_eq!(model.selected(), Some("db"));
        model.move_selection(1);
        assert_eq!(model.selected(), Some("jobs:a"));
        model.next_sort(); // state
        assert_eq!(names(&model), ["db", "jobs:a", "web"]);
        model.next_sort(); // pid
        assert_eq!(names(&model), ["db", "jobs:a", "web"]);
        model.reverse_sort();
        assert_eq!(names(&model), ["web", "jobs:a", "db"]);
        assert_eq!(model.selected_index(), Some(1), "the selection follows its row");
        model.set_filter("WE".into());
        assert_eq!(names(&model), ["web"]);
        assert_eq!(model.selected(), Some("web"), "a hidden selection moves to a shown row");
        model.set_filter("stopped".into());
        assert_eq!(names(&model), ["db"]);
        model.set_filter(String::new());
        model.select_end(true);
        assert_eq!(model.selected(), Some("db"));
        model.move_selection(-10);
        assert_eq!(model.selected(), Some("web"));
        assert_eq!(model.counts(), (3, 2));
    }

    #[test]
    fn cpu_is_a_rate_between_samples_of_the_same_child() {
        let mut model = Model::new();
        let t0 = Instant::now();
        model.update(&facts(vec![process("a", "a", ProcessState::Running, 5, 1_000_000)]), t0);
        assert_eq!(model.shown().next().unwrap().cpu_percent, None);
        let t1 = t0 + Duration::from_secs(2);
        model.update(&facts(vec![process("a", "a", ProcessState::Running, 5, 2_000_000)]), t1);
        let row = model.shown().next().unwrap().clone();
        assert_eq!(row.cpu_percent, Some(50.0));
        assert_eq!((row.rss, row.uptime, row.ready), (Some(5 * 1024), Some(100), true));
        // A new child starts over.
        let t2 = t1 + Duration::from_secs(2);
        model.update(&facts(vec![process("a", "a", ProcessState::Running, 6, 0)]), t2);
        assert_eq!(model.shown().next().unwrap().cpu_percent, None);
    }

    #[test]
    fn the_log_pane_keeps_whole_lines_without_control_characters() {
        let mut model = Model::new();
        model.follow_log(Some("a".into()), false);
        model.push_log(b"one\ntw");
        model.push_log(b"o\x1b[31m red\n\tthree");
        assert_eq!(model.log_tail(10), ["one", "two[31m red", "    three"]);
        assert_eq!(model.log_tail(1), ["    three"]);
        for i in 0..LOG_LINES + 5 {
            model.push_log(format!("{i}\n").as_bytes());
        }
        assert_eq!(model.log_tail(LOG_LINES + 100).len(), LOG_LINES);
        assert_eq!(model.log_tail(1), [format!("{}", LOG_LINES + 4)]);
        model.follow_log(Some("b".into()), true);
        assert!(model.log_tail(5).is_empty());
    }

    #[test]
    fn durations_and_sizes_are_compact() {
        assert_eq!(compact_duration(-3), "0s");
        assert_eq!(compact_duration(59), "59s");
        assert_eq!(compact_duration(723), "12m03s");
        assert_eq!(compact_duration(3 * 3600 + 7 * 60), "3h07m");
        assert_eq!(compact_duration(2 * 86_400 + 4 * 3600), "2d04h");
        assert_eq!(compact_bytes(512), "512B");
        assert_eq!(compact_bytes(812 * 1024), "812K");
        assert_eq!(compact_bytes(14 * 1_048_576 + 200_000), "14.2M");
        assert_eq!(compact_bytes(1_130_000_000), "1.05G");
    }
}
