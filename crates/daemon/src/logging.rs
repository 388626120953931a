//! The activity log (supervisord's "main log"), fed by `tracing`.
//!
//! Every `tracing` event becomes one supervisord-format line,
//! `2026-11-23 23:34:01,123 INFO spawned: 'app1' with pid 42`, written to the
//! configured file (rotated by size with supervisord's `.1` .. `.N` naming), to
//! syslog, or nowhere, and echoed to stdout when running in the foreground and not
//! `silent`. The destination and level can change at run time (SIGHUP reload,
//! SIGUSR2 reopen) because the global subscriber can only be installed once.
//!
//! With `[supervisord] logfile_format = json` each event is one JSON object
//! instead, `{"ts":"2026-11-23T22:34:01.123Z","level":"info","message":"..."}`
//! (UTC, RFC 3339 with milliseconds; the level as `loglevel` spells it), in
//! the file and on stdout alike; syslog gets the message as text either way.
//!
//! supervisord has seven levels and `tracing` five, so the two extra ones are
//! marked with a field: `tracing::error!(critical = true, ...)` is `CRIT`, and
//! `tracing::trace!(blather = true, ...)` is `BLAT`. Events from other crates
//! (tarpc, ractor, ...) are admitted only at `WARN` and above so that their
//! per-request chatter does not flood the activity log at `debug`.
//!
//! The file is vigil-core's [`LogFile`], the same rotating file as the
//! programs' logs, reached by the same rule (no link a less privileged user
//! could have planted is followed) and failing with the same [`LogError`].
//!
//! [`MainLog::read`] and [`MainLog::tail`] give the RPC layer supervisord's
//! `readLog` and tail semantics over the current log file. For `maintail -f`,
//! [`MainLog::follow`] works in stream positions (bytes ever written to the
//! log since the daemon opened it), which stay monotonic across rotation,
//! reopening and clearing, so a follower never sees a byte twice.

use std::fmt::Write as _;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use vigil_config::{LogLevel, LogTarget, MainLogFormat, Supervisord};
pub use vigil_core::logs::{LogError, LogFile, backup_path};

/// Marker field that turns an `error!` into supervisord's `CRIT`.
pub const CRITICAL_FIELD: &str = "critical";
/// Marker field that turns a `trace!` into supervisord's `BLAT`.
pub const BLATHER_FIELD: &str = "blather";

/// Where and how the activity log is written; derived from `[supervisord]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `logfile`: a file, syslog or nowhere.
    pub target: LogTarget,
    /// `logfile_maxbytes`: the size that rotates the file (0: never).
    pub maxbytes: u64,
    /// `logfile_backups`: rotated files kept.
    pub backups: u32,
    /// `loglevel`: the least severe level written.
    pub level: LogLevel,
    /// Echo every line to stdout (`nodaemon` and not `silent`).
    pub echo_stdout: bool,
    /// `logfile_format`: supervisord's text lines or JSON lines.
    pub format: MainLogFormat,
}

impl LogSettings {
    /// The settings `[supervisord]` asks for. Echoing needs the foreground, so a
    /// daemonized process (`nodaemon = false`) never writes to its /dev/null stdout.
    pub fn from_config(settings: &Supervisord) -> LogSettings {
        LogSettings {
            target: settings.logfile.clone(),
            maxbytes: settings.logfile_maxbytes,
            backups: settings.logfile_backups,
            level: settings.loglevel,
            echo_stdout: settings.nodaemon && !settings.silent,
            format: settings.logfile_format,
        }
    }
}

/// The activity log destination. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct MainLog {
    inner: Arc<Mutex<Inner>>,
    /// The level, readable without the lock: every event checks it.
    level: Arc<AtomicU8>,
    /// Whether lines are JSON, readable without the lock as every event formats one.
    json: Arc<AtomicBool>,
    /// The stream position just past the newest byte, for long polls.
    end: Arc<tokio::sync::watch::Sender<u64>>,
}

struct Inner {
    settings: LogSettings,
    sink: Sink,
    /// The stream position of the current file's first byte; the file holds
    /// positions `file_start..end`.
    file_start: u64,
    /// After a rotation, the stream position of `<file>.1`'s first byte: it
    /// holds `backup_start..file_start`, so a follower just behind the rotation
    /// loses nothing.
    backup_start: Option<u64>,
}

enum Sink {
    None,
    Syslog,
    File(RotatingFile),
}

impl std::fmt::Debug for MainLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainLog").field("settings", &self.lock().settings).finish()
    }
}

impl MainLog {
    /// Opens the destination. A file is opened for appending (its directory must
    /// exist, as in supervisord).
    pub fn open(settings: LogSettings) -> io::Result<MainLog> {
        let sink = Sink::open(&settings)?;
        let level = Arc::new(AtomicU8::new(settings.level as u8));
        let json = Arc::new(AtomicBool::new(settings.format == MainLogFormat::Json));
        let size = sink.size();
        let inner = Inner { settings, sink, file_start: 0, backup_start: None };
        let end = Arc::new(tokio::sync::watch::Sender::new(size));
        Ok(MainLog { inner: Arc::new(Mutex::new(inner)), level, json, end })
    }

    /// The file was replaced (reopen, reconfigure, clear): its content counts as
    /// new bytes after everything so far.
    fn restart_positions(&self, inner: &mut Inner) {
        let end = *self.end.borrow();
        inner.file_start = end;
        inner.backup_start = None;
        self.end.send_replace(end + inner.sink.size());
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock (in a write) leaves the state usable: the
        // worst case is a half-written line, so recover rather than lose logging.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current level.
    pub fn level(&self) -> LogLevel {
        level_from_u8(self.level.load(Ordering::Relaxed))
    }

    /// The current log file, if the log goes to a file.
    pub fn path(&self) -> Option<PathBuf> {
        match &self.lock().settings.target {
            LogTarget::Path(path) => Some(path.clone()),
            _ => None,
        }
    }

    /// Switches to new settings (SIGHUP reload). On error the old destination stays.
    pub fn reconfigure(&self, settings: LogSettings) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.settings.target != settings.target {
            inner.sink = Sink::open(&settings)?;
            self.restart_positions(&mut inner);
        } else if let Sink::File(file) = &mut inner.sink {
            file.maxbytes = settings.maxbytes;
            file.backups = settings.backups;
        }
        self.level.store(settings.level as u8, Ordering::Relaxed);
        self.json.store(settings.format == MainLogFormat::Json, Ordering::Relaxed);
        inner.settings = settings;
        drop(inner);
        // Level changes must reach callsites whose interest was already cached.
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    }

    /// Closes and reopens the file (SIGUSR2, for logrotate's move-then-signal).
    pub fn reopen(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if let Sink::File(file) = &mut inner.sink {
            file.reopen()?;
            self.restart_positions(&mut inner);
        }
        Ok(())
    }

    /// supervisord's `clearLog`: deletes the file and starts an empty one.
    pub fn clear(&self) -> Result<(), LogError> {
        let mut inner = self.lock();
        let Sink::File(file) = &mut inner.sink else {
            return Err(LogError::NoFile);
        };
        let cleared = file.file.clear();
        // Whatever is there now (nothing, if the fresh file could not be
        // opened) starts after everything so far.
        self.restart_positions(&mut inner);
        cleared
    }

    /// `readLog` for the RPC layer: the same `(offset, length)` rules as
    /// [`MainLog::read`], but at most `max` bytes, the first part of the range.
    /// Returns `(bytes, start, end, size)` in file offsets.
    pub fn read_slice(
        &self,
        offset: i64,
        length: i64,
        max: u64,
    ) -> Result<(Vec<u8>, u64, u64, u64), LogError> {
        let inner = self.lock();
        let Sink::File(file) = &inner.sink else {
            return Err(LogError::NoFile);
        };
        let size = match file.file.stat(0)? {
            Some(stat) => u64::try_from(stat.st_size).unwrap_or(0),
            None => return Err(LogError::NoFile),
        };
        let (from, to) = match (offset, length) {
            (o, 0) if o < 0 => (size.saturating_sub(o.unsigned_abs()), size),
            (o, 0) => (o.unsigned_abs(), size),
            (o, l) if o >= 0 && l > 0 => {
                (o.unsigned_abs(), o.unsigned_abs().saturating_add(l.unsigned_abs()).min(size))
            }
            _ => return Err(LogError::BadArguments { offset, length }),
        };
        let to = to.min(from.saturating_add(max));
        if from >= to {
            return Ok((Vec::new(), from, from, size));
        }
        let start = i64::try_from(from).map_err(|_| LogError::BadArguments { offset, length })?;
        let bytes =
            read_file(file.file.path(), start, i64::try_from(to - from).unwrap_or(i64::MAX))?;
        let end = from + bytes.len() as u64;
        Ok((bytes, from, end, size))
    }

    /// The stream position just past the newest byte.
    pub fn end(&self) -> u64 {
        *self.end.borrow()
    }

    /// Resolves once the log holds bytes beyond stream position `position`.
    pub async fn wait_beyond(&self, position: u64) {
        let mut receiver = self.end.subscribe();
        // The sender lives in `self`: no error.
        let _ = receiver.wait_for(|end| *end > position).await;
    }

    /// `maintail -f`: up to `max` bytes from stream position `offset` (negative:
    /// that many bytes before the end). Returns `(bytes, start, next)`; `start`
    /// is later than asked when those bytes are no longer in the current file.
    pub fn follow(&self, offset: i64, max: u64) -> Result<(Vec<u8>, u64, u64), LogError> {
        let inner = self.lock();
        let Sink::File(file) = &inner.sink else {
            return Err(LogError::NoFile);
        };
        let end = self.end();
        let wanted = if offset < 0 {
            end.saturating_sub(offset.unsigned_abs())
        } else {
            offset.unsigned_abs()
        };
        if wanted > end {
            return Err(LogError::BadArguments { offset, length: 0 });
        }
        if let Some(backup_start) = inner.backup_start
            && wanted >= backup_start
            && wanted < inner.file_start
        {
            let take = (inner.file_start - wanted).min(max);
            let position = i64::try_from(wanted - backup_start).unwrap_or(i64::MAX);
            let backup = backup_path(file.file.path(), 1);
            let bytes = read_file(&backup, position, i64::try_from(take).unwrap_or(i64::MAX))?;
            let next = wanted + bytes.len() as u64;
            return Ok((bytes, wanted, next));
        }
        let start = wanted.max(inner.file_start);
        let take = (end - start).min(max);
        if take == 0 {
            return Ok((Vec::new(), start, start));
        }
        let position = i64::try_from(start - inner.file_start).unwrap_or(i64::MAX);
        // Holding the lock keeps a rotation from moving the file under us.
        let bytes = read_file(file.file.path(), position, i64::try_from(take).unwrap_or(i64::MAX))?;
        let next = start + bytes.len() as u64;
        Ok((bytes, start, next))
    }

    /// Whether lines are written as JSON.
    pub fn json(&self) -> bool {
        self.json.load(Ordering::Relaxed)
    }

    /// Writes one already formatted line at `level`.
    pub fn write_line(&self, level: LogLevel, line: &str) {
        self.write_entry(level, line, None);
    }

    /// Writes one formatted line at `level`; syslog gets `message` (the
    /// line's text without time and level) when given.
    fn write_entry(&self, level: LogLevel, line: &str, message: Option<&str>) {
        let mut guard = self.lock();
        // Disjoint borrows of the sink and the positions.
        let inner = &mut *guard;
        if inner.settings.echo_stdout {
            // A closed stdout must not stop file logging.
            let mut out = io::stdout().lock();
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        }
        match &mut inner.sink {
            Sink::None => {}
            Sink::Syslog => match message {
                Some(message) => syslog_message(level, message),
                None => syslog(level, line),
            },
            Sink::File(file) => {
                let before = file.file.size();
                let written = file.write(line.as_bytes());
                let end = *self.end.borrow() + line.len() as u64;
                if file.file.size() < before + line.len() as u64 {
                    // Rolled over (or failed part way): the file starts afresh,
                    // the old one is `.1` if backups are kept.
                    let rolled = written.is_ok() && file.backups > 0;
                    inner.backup_start = rolled.then_some(inner.file_start);
                    inner.file_start = end - file.file.size();
                }
                self.end.send_replace(end);
                if let Err(err) = written {
                    // Nowhere else to report it: stderr is /dev/null once daemonized,
                    // but in the foreground the operator sees it.
                    let _ = writeln!(io::stderr(), "vigild: cannot write activity log: {err}");
                }
            }
        }
    }

    /// supervisord's `readLog(offset, length)` over the current log file: a
    /// negative offset with length 0 reads the last `-offset` bytes; otherwise reads
    /// `length` bytes (all when 0) from `offset`.
    pub fn read(&self, offset: i64, length: i64) -> Result<Vec<u8>, LogError> {
        let path = self.path().ok_or(LogError::NoFile)?;
        read_file(&path, offset, length)
    }

    /// supervisord's `tailFile(offset, length)`: returns `(bytes, new_offset,
    /// overflow)`; `new_offset` is the file size to pass next time, `overflow` says
    /// bytes were skipped since `offset`.
    pub fn tail(&self, offset: u64, length: u64) -> (Vec<u8>, u64, bool) {
        match self.path() {
            Some(path) => tail_file(&path, offset, length),
            None => (Vec::new(), offset, false),
        }
    }
}

impl Sink {
    /// The current file's size; 0 for other sinks.
    fn size(&self) -> u64 {
        match self {
            Sink::File(file) => file.file.size(),
            _ => 0,
        }
    }

    fn open(settings: &LogSettings) -> Result<Sink, LogError> {
        Ok(match &settings.target {
            LogTarget::None | LogTarget::Auto => Sink::None,
            LogTarget::Syslog => {
                open_syslog();
                Sink::Syslog
            }
            LogTarget::Path(path) => {
                Sink::File(RotatingFile::open(path.clone(), settings.maxbytes, settings.backups)?)
            }
        })
    }
}

/// The activity log's file: a [`LogFile`] rotated as supervisord's
/// `RotatingFileHandler` does, after a write that brings the size to
/// `maxbytes` or more (so a line is never split): `.N-1` -> `.N` ... `.1` ->
/// `.2`, base -> `.1`, and a fresh base. With `backups == 0` the file is
/// truncated instead. Non-regular files (`/dev/stdout`) are never rotated.
pub struct RotatingFile {
    file: LogFile,
    maxbytes: u64,
    backups: u32,
}

impl RotatingFile {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: PathBuf, maxbytes: u64, backups: u32) -> Result<RotatingFile, LogError> {
        Ok(RotatingFile { file: LogFile::open(path)?, maxbytes, backups })
    }

    /// Appends `bytes`, then rotates if the file reached `maxbytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        if !self.file.is_open() {
            // A failed reopen after a rotation or clear: try again.
            self.file.reopen()?;
        }
        if let (_, Some(source)) = self.file.write(bytes) {
            return Err(LogError::Io { path: self.file.path().to_owned(), source });
        }
        if self.file.is_regular() && self.maxbytes > 0 && self.file.size() >= self.maxbytes {
            self.rollover()?;
        }
        Ok(())
    }

    /// Opens the path again: a fresh file after `clearLog`, or after an outside
    /// rotation moved the old one (SIGUSR2).
    pub fn reopen(&mut self) -> Result<(), LogError> {
        self.file.reopen()
    }

    fn rollover(&mut self) -> Result<(), LogError> {
        let rotation = self.file.rotate(self.backups)?;
        rotation.reopen?;
        match rotation.backup_errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// supervisord's `readFile` semantics (see [`MainLog::read`]).
pub fn read_file(path: &Path, offset: i64, length: i64) -> Result<Vec<u8>, LogError> {
    if offset < 0 && length != 0 || length < 0 {
        return Err(LogError::BadArguments { offset, length });
    }
    let mut file = match vigil_core::logs::file::open_read(path) {
        Ok(file) => file,
        Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Err(LogError::NoFile);
        }
        Err(LogError::Io { source, .. }) => return Err(LogError::Failed(source)),
        Err(error) => return Err(error),
    };
    let failed = LogError::Failed;
    let mut data = Vec::new();
    if offset < 0 {
        let size = file.seek(SeekFrom::End(0)).map_err(failed)?;
        let want = offset.unsigned_abs();
        file.seek(SeekFrom::Start(size.saturating_sub(want))).map_err(failed)?;
        file.take(want).read_to_end(&mut data).map_err(failed)?;
    } else {
        file.seek(SeekFrom::Start(offset.unsigned_abs())).map_err(failed)?;
        if length == 0 {
            file.read_to_end(&mut data).map_err(failed)?;
        } else {
            file.take(length.unsigned_abs()).read_to_end(&mut data).map_err(failed)?;
        }
    }
    Ok(data)
}

/// supervisord's `tailFile` semantics (see [`MainLog::tail`]).
pub fn tail_file(path: &Path, offset: u64, length: u64) -> (Vec<u8>, u64, bool) {
    let attempt = || -> io::Result<(Vec<u8>, u64, bool)> {
        let mut file = vigil_core::logs::file::open_read(path)?;
        let size = file.seek(SeekFrom::End(0))?;
        let (start, take, overflow) = tail_window(size, offset, length);
        let mut data = Vec::new();
        if take > 0 {
            file.seek(SeekFrom::Start(start))?;
            file.take(take).read_to_end(&mut data)?;
        }
        Ok((data, size, overflow))
    };
    attempt().unwrap_or((Vec::new(), offset, false))
}

/// The pure part of `tailFile`: given the file size and the caller's offset and
/// length, where to read, how much, and whether bytes were skipped.
pub fn tail_window(size: u64, offset: u64, length: u64) -> (u64, u64, bool) {
    let mut offset = offset;
    let mut length = length;
    let mut overflow = false;
    if size > offset.saturating_add(length) {
        overflow = true;
        offset = size.saturating_sub(1);
    }
    if offset.saturating_add(length) > size {
        if offset + 1 > size {
            length = 0;
        }
        offset = size.saturating_sub(length);
    }
    (offset, length, overflow)
}

/// A broken-down local time with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// The year (`2024`).
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 60 (a leap second).
    pub second: u32,
    /// 0 to 999.
    pub millis: u32,
}

impl LocalTime {
    /// Converts through the C library's `localtime_r` (honours `TZ`), once
    /// per second and thread: a restart logs three lines in the same second,
    /// and the time zone's rules are looked up again on every call.
    pub fn from_system(time: SystemTime) -> LocalTime {
        thread_local! {
            static LAST: std::cell::Cell<Option<(u64, LocalTime)>> = const { std::cell::Cell::new(None) };
        }
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let millis = since.subsec_millis();
        if let Some((secs, local)) = LAST.get()
            && secs == since.as_secs()
        {
            return LocalTime { millis, ..local };
        }
        let secs = libc::time_t::try_from(since.as_secs()).unwrap_or(libc::time_t::MAX);
        // SAFETY: `tm` is plain data that localtime_r fully initialises on success;
        // on failure we keep the zeroed value, which formats as a visible 1900 date.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is reentrant.
        unsafe { libc::localtime_r(&secs, &mut tm) };
        let local = LocalTime {
            year: tm.tm_year + 1900,
            month: u32::try_from(tm.tm_mon + 1).unwrap_or(0),
            day: u32::try_from(tm.tm_mday).unwrap_or(0),
            hour: u32::try_from(tm.tm_hour).unwrap_or(0),
            minute: u32::try_from(tm.tm_min).unwrap_or(0),
            second: u32::try_from(tm.tm_sec).unwrap_or(0),
            millis,
        };
        LAST.set(Some((since.as_secs(), local)));
        local
    }
}

fn level_from_u8(value: u8) -> LogLevel {
    const LEVELS: [LogLevel; 7] = [
        LogLevel::Critical,
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
        LogLevel::Blather,
    ];
    LEVELS.get(usize::from(value)).copied().unwrap_or(LogLevel::Blather)
}

/// supervisord's four-letter level names.
pub fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Critical => "CRIT",
        LogLevel::Error => "ERRO",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBG",
        LogLevel::Trace => "TRAC",
        LogLevel::Blather => "BLAT",
    }
}

/// One activity-log line, newline included.
pub fn format_line(time: LocalTime, level: LogLevel, message: &str) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03} {} {}\n",
        time.year,
        time.month,
        time.day,
        time.hour,
        time.minute,
        time.second,
        time.millis,
        level_name(level),
        message
    )
}

/// One activity-log line as JSON, newline included (see the module docs).
pub fn format_json_line(time: SystemTime, level: LogLevel, message: &str) -> String {
    let ts = jiff::Timestamp::try_from(time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    // Written by hand to keep the keys in this order (time first).
    let message = serde_json::to_string(message).expect("a string serializes");
    format!("{{\"ts\":\"{ts:.3}\",\"level\":\"{}\",\"message\":{message}}}\n", level_word(level))
}

/// A level as `loglevel` spells it.
fn level_word(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Critical => "critical",
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
        LogLevel::Blather => "blather",
    }
}

/// The supervisord level of an event, from its `tracing` level and marker fields.
pub fn supervisord_level(metadata: &Metadata<'_>) -> LogLevel {
    let has = |name: &str| metadata.fields().field(name).is_some();
    match *metadata.level() {
        Level::ERROR if has(CRITICAL_FIELD) => LogLevel::Critical,
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE if has(BLATHER_FIELD) => LogLevel::Blather,
        Level::TRACE => LogLevel::Trace,
    }
}

/// Whether an event passes the configured level. Events from outside vigil are
/// capped at WARN (see the module docs).
pub fn admits(configured: LogLevel, metadata: &Metadata<'_>) -> bool {
    let level = supervisord_level(metadata);
    let ours = metadata.target().starts_with("vigil");
    level <= configured && (ours || level <= LogLevel::Warn)
}

/// The `tracing` layer that renders events into the [`MainLog`].
#[derive(Debug, Clone)]
pub struct ActivityLayer {
    log: MainLog,
}

impl ActivityLayer {
    /// A layer writing into `log`.
    pub fn new(log: MainLog) -> ActivityLayer {
        ActivityLayer { log }
    }
}

impl<S: Subscriber> Layer<S> for ActivityLayer {
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        // The level can change on reload, so ask `enabled` every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        admits(self.log.level(), metadata)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = supervisord_level(event.metadata());
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let message = visitor.finish();
        let now = SystemTime::now();
        let line = if self.log.json() {
            format_json_line(now, level, &message)
        } else {
            format_line(LocalTime::from_system(now), level, &message)
        };
        self.log.write_entry(level, &line, Some(&message));
    }
}

/// Collects the `message` plus any other fields as ` key=value`.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    extra: String,
}

impl MessageVisitor {
    fn finish(self) -> String {
        self.message + &self.extra
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if !is_marker(field) {
            let _ = write!(self.extra, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if !is_marker(field) {
            let _ = write!(self.extra, " {}={:?}", field.name(), value);
        }
    }
}

fn is_marker(field: &Field) -> bool {
    field.name() == CRITICAL_FIELD || field.name() == BLATHER_FIELD
}

/// Installs the activity layer as the process-wide subscriber plus a panic hook
/// that logs panics through it (a panic in a task would otherwise only reach the
/// daemon's stderr, which is /dev/null once daemonized).
pub fn install(log: MainLog) -> Result<(), tracing::subscriber::SetGlobalDefaultError> {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(ActivityLayer::new(log));
    tracing::subscriber::set_global_default(subscriber)?;
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                tracing::error!(critical = true, "panic in thread '{name}': {info}\n{backtrace}")
            }
            _ => tracing::error!(critical = true, "panic in thread '{name}': {info}"),
        }
    }));
    Ok(())
}

fn open_syslog() {
    vigil_core::syslog::open();
}

fn syslog_priority(level: LogLevel) -> libc::c_int {
    match level {
        LogLevel::Critical => libc::LOG_CRIT,
        LogLevel::Error => libc::LOG_ERR,
        LogLevel::Warn => libc::LOG_WARNING,
        LogLevel::Info => libc::LOG_INFO,
        LogLevel::Debug | LogLevel::Trace | LogLevel::Blather => libc::LOG_DEBUG,
    }
}

/// A formatted text line to syslog, which stamps its own time: just "LEVL message".
fn syslog(level: LogLevel, line: &str) {
    let text =
        line.split_once(' ').and_then(|(_, rest)| rest.split_once(' ')).map_or(line, |x| x.1);
    vigil_core::syslog::send(syslog_priority(level), text);
}

/// An event's message to syslog as "LEVL message", whatever the line format.
fn syslog_message(level: LogLevel, message: &str) {
    vigil_core::syslog::send(syslog_priority(level), &format!("{} {message}", level_name(level)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time() -> LocalTime {
        LocalTime { year: 2026, month: 11, day: 3, hour: 9, minute: 4, second: 1, millis: 7 }
    }

    #[test]
    fn line_format_matches_supervisord() {
        assert_eq!(
            format_line(time(), LogLevel::Info, "spawned: 'app1' with pid 42"),
            "2026-11-03 09:04:01,007 INFO spawned: 'app1' with pid 42\n"
        );
        let names: Vec<_> = [
            LogLevel::Critical,
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
            LogLevel::Blather,
        ]
        .into_iter()
        .map(level_name)
        .collect();
        assert_eq!(names, ["CRIT", "ERRO", "WARN", "INFO", "DEBG", "TRAC", "BLAT"]);
        for level in [LogLevel::Critical, LogLevel::Info, LogLevel::Blather] {
            assert_eq!(level_from_u8(level as u8), level);
        }
    }

    #[test]
    fn json_lines_carry_time_level_and_message() {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(1_764_000_000_007);
        let line = format_json_line(time, LogLevel::Debug, "'web' stdout output:\nhi \"there\"\n");
        assert!(line.starts_with("{\"ts\":") && line.ends_with("}\n"), "{line:?}");
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ts"], "2025-11-24T16:00:00.007Z");
        assert_eq!(value["level"], "debug");
        assert_eq!(value["message"], "'web' stdout output:\nhi \"there\"\n");
    }

    #[test]
    fn local_time_is_plausible() {
        let t = LocalTime::from_system(SystemTime::now());
        assert!(t.year >= 2024 && (1..=12).contains(&t.month) && (1..=31).contains(&t.day));
        assert!(t.hour < 24 && t.minute < 60 && t.second <= 60 && t.millis < 1000);
    }

    #[test]
    fn local_time_of_a_second_seen_before_keeps_its_own_millis() {
        use std::time::Duration;
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let first = LocalTime::from_system(base + Duration::from_millis(5));
        let again = LocalTime::from_system(base + Duration::from_millis(999));
        assert_eq!(again, LocalTime { millis: 999, ..first });
        // The next second is converted, not carried over.
        let next = LocalTime::from_system(base + Duration::from_millis(1_001));
        assert_eq!(next.millis, 1);
        assert_eq!(next.second, (first.second + 1) % 60);
        // Earlier again: converted once more, so going back is exact too.
        assert_eq!(LocalTime::from_system(base + Duration::from_millis(5)), first);
    }

    fn file_settings(path: &Path, maxbytes: u64, backups: u32, level: LogLevel) -> LogSettings {
        LogSettings {
            target: LogTarget::Path(path.to_owned()),
            maxbytes,
            backups,
            level,
            echo_stdout: false,
            format: MainLogFormat::Text,
        }
    }

    #[test]
    fn rotation_keeps_numbered_backups() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("main.log");
        let mut file = RotatingFile::open(base.clone(), 10, 2).unwrap();
        for chunk in ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dd"] {
            file.write(chunk.as_bytes()).unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(base.clone()), "dd");
        assert_eq!(read(backup_path(&base, 1)), "cccccccccc");
        assert_eq!(read(backup_path(&base, 2)), "bbbbbbbbbb");
        assert!(!backup_path(&base, 3).exists(), "only `backups` copies are kept");
    }

    #[test]
    fn rotation_without_backups_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("main.log");
        let mut file = RotatingFile::open(base.clone(), 4, 0).unwrap();
        file.write(b"12345").unwrap();
        file.write(b"67").unwrap();
        assert_eq!(std::fs::read_to_string(&base).unwrap(), "67");
        assert!(!backup_path(&base, 1).exists());
    }

    #[test]
    fn zero_maxbytes_never_rotates_and_existing_size_counts() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("main.log");
        std::fs::write(&base, "12345678").unwrap();
        let mut unbounded = RotatingFile::open(base.clone(), 0, 3).unwrap();
        unbounded.write(b"9").unwrap();
        assert_eq!(std::fs::read_to_string(&base).unwrap(), "123456789");
        let mut bounded = RotatingFile::open(base.clone(), 10, 3).unwrap();
        bounded.write(b"0").unwrap();
        assert_eq!(std::fs::read_to_string(backup_path(&base, 1)).unwrap(), "1234567890");
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("main.log");
        let log = MainLog::open(file_settings(&base, 0, 0, LogLevel::Info)).unwrap();
        log.write_line(LogLevel::Info, "one\n");
        std::fs::rename(&base, dir.path().join("moved.log")).unwrap();
        log.write_line(LogLevel::Info, "two\n");
        log.reopen().unwrap();
        log.write_line(LogLevel::Info, "three\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("moved.log")).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&base).unwrap(), "three\n");
    }

    #[test]
    fn planted_links_are_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // Every user may write here, so nothing in it is trusted.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim\n").unwrap();
        std::os::unix::fs::symlink(&victim, open.join("main.log")).unwrap();
        let error =
            MainLog::open(file_settings(&open.join("main.log"), 0, 0, LogLevel::Info)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
        // A directory swapped for a link after the log was opened: reopening
        // and clearing refuse it, and nothing of the link's target changes.
        let sub = open.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let log =
            MainLog::open(file_settings(&sub.join("main.log"), 0, 0, LogLevel::Info)).unwrap();
        log.write_line(LogLevel::Info, "one\n");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("main.log"), "keep\n").unwrap();
        std::fs::rename(&sub, open.join("old")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &sub).unwrap();
        assert!(log.reopen().is_err());
        log.write_line(LogLevel::Info, "two\n");
        assert!(matches!(log.clear(), Err(LogError::Refused { .. })));
        log.write_line(LogLevel::Info, "three\n");
        assert_eq!(std::fs::read_to_string(elsewhere.join("main.log")).unwrap(), "keep\n");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
        assert_eq!(std::fs::read_to_string(open.join("old/main.log")).unwrap(), "one\n");
    }

    #[test]
    fn read_log_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("main.log");
        std::fs::write(&base, "0123456789").unwrap();
        let log = MainLog::open(file_settings(&base, 0, 0, LogLevel::Info)).unwrap();
        assert_eq!(log.read(0, 0).unwrap(), b"0123456789");
        assert_eq!(log.read(2, 3).unwrap(), b"234");
        assert_eq!(log.read(-4, 0).unwrap(), b"6789");
        assert_eq!(log.read(-40, 0).unwrap(), b"0123456789");
        assert_eq!(log.read(20, 5).unwrap(), b"");
        assert!(matches!(log.read(-4, 2), Err(LogError::BadArguments { .. })));
        assert!(matches!(log.read(0, -2), Err(LogError::BadArguments { .. })));
        let none = MainLog::open(LogSettings {
            target: LogTarget::None,
            maxbytes: 0,
            backups: 0,
            level: LogLevel::Info,
            echo_stdout: false,
            format: MainLogFormat::Text,
        })
        .unwrap();
        assert!(matches!(none.read(0, 0), Err(LogError::NoFile)));
        std::fs::remove_file(&base).unwrap();
        assert!(matches!(log.read(0, 0), Err(LogError::NoFile)));
    }

    #[test]
    fn tail_semantics() {
        // Caught up: nothing new, offset stays at the size.
        assert_eq!(tail_window(10, 10, 5), (10, 0, false));
        // Growth within the window: supervisord reads the last `length` bytes
        // ending at the size (which may repeat some already seen).
        assert_eq!(tail_window(10, 8, 5), (5, 5, false));
        // More than `length` new bytes: overflow, read the last `length` bytes.
        assert_eq!(tail_window(100, 10, 5), (95, 5, true));
        // Offset past the end (file truncated): nothing, reset to the size.
        assert_eq!(tail_window(3, 10, 5), (3, 0, false));
        // Empty file.
        assert_eq!(tail_window(0, 0, 5), (0, 0, false));

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("main.log");
        std::fs::write(&base, "0123456789").unwrap();
        assert_eq!(tail_file(&base, 0, 4), (b"6789".to_vec(), 10, true));
        assert_eq!(tail_file(&dir.path().join("missing"), 7, 4), (Vec::new(), 7, false));
    }

    #[test]
    fn level_mapping_and_filter() {
        use tracing_subscriber::layer::SubscriberExt;

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("main.log");
        let log = MainLog::open(file_settings(&base, 0, 0, LogLevel::Warn)).unwrap();
        let subscriber = tracing_subscriber::registry().with(ActivityLayer::new(log.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(critical = true, "first");
            tracing::error!("second");
            tracing::warn!("third");
            tracing::info!("dropped at warn");
            tracing::warn!(target: "tarpc::server", "foreign warn kept");
            log.reconfigure(file_settings(&base, 0, 0, LogLevel::Blather)).unwrap();
            tracing::info!(pid = 42, "fourth");
            tracing::trace!(blather = true, "fifth");
            tracing::debug!(target: "tarpc::server", "foreign debug dropped");
        });
        let text = std::fs::read_to_string(&base).unwrap();
        let lines: Vec<_> =
            text.lines().map(|l| l.split_once(' ').unwrap().1.split_once(' ').unwrap().1).collect();
        assert_eq!(
            lines,
            [
                "CRIT first",
                "ERRO second",
                "WARN third",
                "WARN foreign warn kept",
                "INFO fourth pid=42",
                "BLAT fifth"
            ]
        );
    }
}
