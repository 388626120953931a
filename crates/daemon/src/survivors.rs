//! The record of vigild's children that outlives vigild, and what the next
//! vigild does with the survivors it finds in it.
//!
//! A vigild killed with SIGKILL cannot stop its programs: they are re-parented
//! and keep running. So vigild keeps a list of its live children (pid and the
//! start time the kernel gives in `/proc/PID/stat`, which tells a survivor
//! apart from an unrelated process that got the same pid) in a state file, and
//! the next vigild on the same config reads it before it spawns anything. Each
//! recorded process still alive with the same start time is stopped: SIGTERM
//! (to its whole process group if it leads one), SIGKILL after [`GRACE`], each
//! step in the activity log. Nothing is started twice without a word.
//!
//! Where: the file `children` in the directory named after the pidfile with the
//! extension `.state` (`/run/vigild.pid` -> `/run/vigild.state/children`). vigild
//! creates that directory with mode 0700 and refuses to use one that is a
//! symlink, not its own, or writable by anyone else; the file is written to a
//! fresh temporary file (`O_EXCL | O_NOFOLLOW`, mode 0600) and renamed over the
//! old one, so a reader never sees half a list. A file recorded before the last
//! boot (the kernel's `boot_id` differs) is ignored, since pids and start times
//! begin again at each boot.
//!
//! When: spawning and reaping only update the reaper's in-memory map; a task
//! here wakes when that map changes, waits [`BATCH`] so a burst of spawns is
//! written once, and rewrites the file. An idle daemon never wakes for it. A
//! child spawned less than [`BATCH`] before vigild is killed may be missing from
//! the file. A clean shutdown removes the file once every child is gone.

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use vigil_config::Supervisord;
use vigil_core::Reaper;

/// The file's name inside the state directory.
pub const STATE_FILE: &str = "children";
/// How long a survivor gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);
/// How long the recorder waits after a change before writing, to batch a burst.
pub const BATCH: Duration = Duration::from_millis(50);
/// The largest state file read; larger ones are refused as not ours.
const MAX_FILE: u64 = 8 * 1024 * 1024;
/// The first line of the file: its format and version.
const HEADER: &str = "vigild-children 1";
/// How often the survivors are checked while they are being stopped.
const POLL: Duration = Duration::from_millis(20);

/// The state directory for `settings`, if it has a pidfile.
pub fn state_dir(settings: &Supervisord) -> Option<PathBuf> {
    settings.pidfile.as_ref().map(|pidfile| pidfile.with_extension("state"))
}

/// Removes the record in `dir` and `dir` itself, when `dir` is a directory
/// of this user's (not a symlink): a live upgrade's file moved the pidfile,
/// and the record there no longer follows this daemon's children. Failures
/// are logged; a directory holding anything else is left.
pub fn forget(dir: &Path) {
    let ours = std::fs::symlink_metadata(dir)
        .is_ok_and(|meta| meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw());
    if !ours {
        return;
    }
    match std::fs::remove_file(dir.join(STATE_FILE)) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!("could not remove {}: {err}", dir.join(STATE_FILE).display());
        }
        _ => {
            if std::fs::remove_dir(dir).is_ok() {
                tracing::info!("removed the previous record of children {}", dir.display());
            }
        }
    }
}

/// The state directory, checked and ready to be written.
pub struct Ledger {
    dir: PathBuf,
    boot: String,
}

/// Stops the survivors of an earlier vigild on this config (see the module
/// docs; not with `stop` false: after a live upgrade they are this daemon's
/// own children) and returns the ledger to record this daemon's children in.
/// Problems are logged; `None` means the children will not be recorded.
pub async fn recover(settings: &Supervisord, stop: bool) -> Option<Ledger> {
    let Some(dir) = state_dir(settings) else {
        tracing::warn!("no pidfile: children are not recorded for a later vigild to find");
        return None;
    };
    if let Err(err) = prepare_dir(&dir) {
        tracing::error!(
            critical = true,
            "cannot use {} to record children: {err}; processes left running by an \
             earlier vigild are not detected",
            dir.display()
        );
        return None;
    }
    let boot = boot_id();
    let path = dir.join(STATE_FILE);
    if !stop {
        return Some(Ledger { dir, boot });
    }
    match read_file(&path) {
        Ok(None) => {}
        Ok(Some(text)) => match parse(&text) {
            Ok((recorded_boot, entries)) if recorded_boot == boot => stop_survivors(entries).await,
            Ok(_) => {
                tracing::info!("{} was written before the last boot; ignoring it", path.display())
            }
            Err(err) => tracing::error!(
                critical = true,
                "{}: {err}; processes left running by an earlier vigild are not stopped",
                path.display()
            ),
        },
        Err(err) => tracing::error!(
            critical = true,
            "cannot read {}: {err}; processes left running by an earlier vigild are not stopped",
            path.display()
        ),
    }
    Some(Ledger { dir, boot })
}

impl Ledger {
    /// Starts recording the children of the process-wide reaper (none if no
    /// reaper was started, as under a test backend).
    pub fn record(self) -> Option<Recorder> {
        let reaper = Reaper::running()?;
        let task = tokio::spawn(record(reaper.clone(), self.dir.clone(), self.boot.clone()));
        Some(Recorder { task, reaper, ledger: self })
    }
}

/// The running recorder; [`Recorder::finish`] after the tree is down.
pub struct Recorder {
    task: tokio::task::JoinHandle<()>,
    reaper: Reaper,
    ledger: Ledger,
}

impl Recorder {
    /// Stops recording and leaves the file as the children now are: removed
    /// when there are none.
    pub async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        let Recorder { reaper, ledger, .. } = self;
        let children = reaper.children();
        let result = tokio::task::spawn_blocking(move || {
            let path = ledger.dir.join(STATE_FILE);
            if children.is_empty() {
                match std::fs::remove_file(&path) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                    _ => Ok(()),
                }
            } else {
                write_snapshot(&reaper, &ledger.dir, &ledger.boot, &mut HashMap::new())
            }
        })
        .await;
        if let Ok(Err(err)) = result {
            tracing::warn!("cannot update the record of children: {err}");
        }
    }
}

/// Rewrites the file after each batch of changes, until aborted.
async fn record(reaper: Reaper, dir: PathBuf, boot: String) {
    let mut changes = reaper.watch_children();
    // pid -> (spawn serial, start time): read once per child, not once per write.
    let mut starts = HashMap::new();
    loop {
        changes.borrow_and_update();
        let (r, d, b) = (reaper.clone(), dir.clone(), boot.clone());
        let written = tokio::task::spawn_blocking(move || {
            let result = write_snapshot(&r, &d, &b, &mut starts);
            (result, starts)
        })
        .await;
        match written {
            Ok((result, kept)) => {
                starts = kept;
                if let Err(err) = result {
                    tracing::error!("cannot record children in {}: {err}", dir.display());
                }
            }
            Err(_) => return,
        }
        if changes.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(BATCH).await;
    }
}

/// Creates `dir` (0700) or checks that the existing one is safe to use.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err.to_string()),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|err| err.to_string())?;
    if !meta.file_type().is_dir() {
        return Err("it is not a directory".to_owned());
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!("it belongs to uid {}, not to vigild", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("others may write to it (mode {:o})", meta.mode() & 0o7777));
    }
    Ok(())
}

/// The file's text, `None` if there is none; refuses anything that is not a
/// plain file of ours.
fn read_file(path: &Path) -> std::io::Result<Option<String>> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::other("not a regular file owned by vigild"));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!("larger than {MAX_FILE} bytes")));
    }
    Ok(Some(text))
}

/// One recorded child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    pid: i32,
    start: u64,
}

/// `(boot id, entries)` of the file's text.
fn parse(text: &str) -> Result<(String, Vec<Entry>), String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("not a record of children (the first line is not {HEADER:?})"));
    }
    let boot = lines
        .next()
        .and_then(|line| line.strip_prefix("boot "))
        .ok_or("the second line is not `boot ID`")?
        .to_owned();
    let entries = lines
        .enumerate()
        .map(|(index, line)| {
            let bad = || format!("line {}: expected `PID STARTTIME`, got {line:?}", index + 3);
            let (pid, start) = line.split_once(' ').ok_or_else(bad)?;
            let pid: i32 = pid.parse().map_err(|_| bad())?;
            let start: u64 = start.parse().map_err(|_| bad())?;
            if pid <= 1 {
                return Err(bad());
            }
            Ok(Entry { pid, start })
        })
        .collect::<Result<_, String>>()?;
    Ok((boot, entries))
}

fn render(boot: &str, entries: &[Entry]) -> String {
    let mut text = format!("{HEADER}\nboot {boot}\n");
    for entry in entries {
        text.push_str(&format!("{} {}\n", entry.pid, entry.start));
    }
    text
}

/// Writes the reaper's current children; `starts` caches start times by pid
/// and spawn serial.
fn write_snapshot(
    reaper: &Reaper,
    dir: &Path,
    boot: &str,
    starts: &mut HashMap<u32, (u64, u64)>,
) -> std::io::Result<()> {
    // Sets, not lists: with thousands of children, a linear lookup per
    // child made each write quadratic.
    let children: HashSet<(u32, u64)> = reaper.children().into_iter().collect();
    starts.retain(|pid, (serial, _)| children.contains(&(*pid, *serial)));
    let mut entries = Vec::with_capacity(children.len());
    let mut read = Vec::new();
    for &(pid, serial) in &children {
        match starts.get(&pid) {
            Some((_, start)) => entries.push(Entry { pid: pid as i32, start: *start }),
            None => {
                if let Some(stat) = ProcStat::read(pid as i32) {
                    read.push((pid, serial, stat.start));
                }
            }
        }
    }
    if !read.is_empty() {
        // Listed again after the reads: each child must still be ours, or the
        // start time read may be another process's that reused the pid.
        let still: HashSet<(u32, u64)> = reaper.children().into_iter().collect();
        for (pid, serial, start) in read {
            if still.contains(&(pid, serial)) {
                starts.insert(pid, (serial, start));
                entries.push(Entry { pid: pid as i32, start });
            }
        }
    }
    entries.sort_by_key(|entry| entry.pid);
    let text = render(boot, &entries);
    let temp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
    };
    let mut file = match open() {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by an earlier write of ours that failed halfway.
            std::fs::remove_file(&temp)?;
            open()?
        }
        other => other?,
    };
    let written = file.write_all(text.as_bytes());
    drop(file);
    if let Err(err) = written.and_then(|()| std::fs::rename(&temp, dir.join(STATE_FILE))) {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    Ok(())
}

/// The fields of `/proc/PID/stat` used here.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    /// One-letter state; `Z` for a zombie.
    state: char,
    pgrp: i32,
    /// Field 22, clock ticks after boot.
    start: u64,
}

impl ProcStat {
    fn read(pid: i32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold anything: the fields
        // after the last ')' start with field 3.
        let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let pgrp = fields.nth(1)?.parse().ok()?;
        let start = fields.nth(16)?.parse().ok()?;
        Some(ProcStat { state, pgrp, start })
    }

    fn running(self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// True while the recorded process exists (not as a zombie).
fn alive(entry: Entry) -> bool {
    ProcStat::read(entry.pid).is_some_and(|stat| stat.start == entry.start && stat.running())
}

fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: Vec<String> = raw
        .split(|byte| *byte == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    text.join(" ")
}

/// A recorded process found alive.
#[derive(Debug, Clone, Copy)]
struct Survivor {
    entry: Entry,
    /// It leads its own process group, which is signalled with it.
    leader: bool,
}

impl Survivor {
    fn signal(self, signal: Signal) -> nix::Result<()> {
        let pid = Pid::from_raw(self.entry.pid);
        if self.leader { killpg(pid, signal) } else { kill(pid, signal) }
    }
}

/// SIGTERM, then SIGKILL after [`GRACE`], to each recorded process still alive.
async fn stop_survivors(entries: Vec<Entry>) {
    let own = i32::try_from(std::process::id()).unwrap_or(0);
    let mut survivors = Vec::new();
    for entry in entries {
        let Some(stat) = ProcStat::read(entry.pid) else { continue };
        if entry.pid == own || stat.start != entry.start || !stat.running() {
            // Gone, and its pid now names another process (or us).
            continue;
        }
        let survivor = Survivor { entry, leader: stat.pgrp == entry.pid };
        tracing::warn!(
            "pid {} ({}) was left running by an earlier vigild; stopping it with SIGTERM{}",
            entry.pid,
            command_line(entry.pid),
            if survivor.leader { " (with its process group)" } else { "" }
        );
        if let Err(err) = survivor.signal(Signal::SIGTERM) {
            tracing::error!("cannot signal pid {}: {err}", entry.pid);
        }
        survivors.push(survivor);
    }
    if survivors.is_empty() {
        return;
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && survivors.iter().any(|s| alive(s.entry)) {
        tokio::time::sleep(POLL).await;
    }
    for survivor in &survivors {
        let pid = survivor.entry.pid;
        if alive(survivor.entry) {
            tracing::warn!("pid {pid} did not stop within {GRACE:?}; sending SIGKILL");
        } else if survivor.leader && group_exists(pid) {
            tracing::warn!("process group {pid} outlived its leader; sending SIGKILL");
        } else {
            tracing::info!("stopped pid {pid}, left running by an earlier vigild");
            continue;
        }
        if let Err(err) = survivor.signal(Signal::SIGKILL) {
            tracing::error!("cannot kill pid {pid}: {err}");
        }
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && survivors.iter().any(|s| alive(s.entry)) {
        tokio::time::sleep(POLL).await;
    }
}

/// True while some live process is in process group `pgrp`.
fn group_exists(pgrp: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            .and_then(ProcStat::read)
            .is_some_and(|stat| stat.pgrp == pgrp && stat.running())
    })
}

/// The kernel's id of this boot (empty if unknown, which then matches only a
/// file that did not know it either).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_bad_lines_are_refused() {
        let entries = [Entry { pid: 42, start: 7 }, Entry { pid: 4242, start: 99 }];
        let text = render("b00t", &entries);
        assert_eq!(parse(&text), Ok(("b00t".to_owned(), entries.to_vec())));
        assert!(parse("something else\n").is_err());
        assert!(parse(&format!("{HEADER}\nboot x\n1 5\n")).is_err(), "pid 1 is never ours");
        assert!(parse(&format!("{HEADER}\nboot x\n12 x\n")).unwrap_err().contains("line 3"));
    }

    #[test]
    fn own_stat_has_a_start_time() {
        let me = ProcStat::read(i32::try_from(std::process::id()).unwrap()).expect("stat");
        assert!(me.running());
        assert!(me.start > 0);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("x.state");
        prepare_dir(&dir).expect("created");
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        prepare_dir(&dir).expect("ours, reused");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(prepare_dir(&dir).is_err());
    }
}
