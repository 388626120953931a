//! `vigilctl top`: a live terminal view of the daemon over the control
//! service. It owns the terminal while it runs (raw mode, alternate screen,
//! hidden cursor) and gives it back however it ends: `q`, Ctrl-C, SIGINT,
//! SIGTERM, SIGHUP, a lost connection, or a panic unwinding through it.
//!
//! Where the data comes from, and what it costs the daemon:
//! - State changes are long-polled with `changes`: the daemon answers when
//!   a process changes (or after [`CHANGE_WAIT`]), and top then reads the facts
//!   again. No timer runs in the daemon for it.
//! - CPU and memory are not changes the daemon notices; they are read from
//!   /proc by a `facts` call every [`REFRESH`] while top is open. This is the
//!   one periodic request (besides the long polls asking again after their
//!   timeouts), made because a client asked, and it ends with top.
//! - The log pane follows the selected process with `tail_follow`, the long
//!   poll behind `tail -f`.
//!
//! A lost connection (vigild's live upgrade ends every connection, and the
//! next image answers on the same socket) is made again once, and top goes on:
//! the long polls ask the new image, and the log pane follows on from the
//! offset it had reached, without a repeated byte. Lost again before the new
//! connection answered, top ends and says why.
//!
//! The pure parts (rows, sort, filter, selection, CPU rates, log lines) are in
//! `model`; the drawing is in `view`.

mod model;
mod view;

use std::io::{self, Stdout};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute, terminal};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use vigil_rpc::{
    CallError, ControlClient, ControlError, Facts, LogChannel, LogTarget, NameSpec,
    context_with_timeout, flatten,
};

use crate::limits::{FOLLOW_BACKLOG, FOLLOW_WAIT, QUERY_TIMEOUT, WAIT_TIMEOUT};
use crate::render;
use model::Model;

/// How often CPU and memory are read again while top is open.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long one `changes` long poll waits in the daemon.
pub const CHANGE_WAIT: Duration = Duration::from_secs(30);
/// The least time between two reads of the facts, so a burst of changes
/// (thousands of processes starting) costs a few reads, not thousands.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// How top ended, when not by the user's `q` or Ctrl-C.
#[derive(Debug)]
pub enum Ended {
    /// The connection to the daemon closed or a call failed: why.
    Lost(String),
    /// The terminal could not be set up or written.
    Terminal(io::Error),
    /// A signal asked top to end (SIGTERM, SIGHUP).
    Signal(&'static str),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Lost(why) => write!(f, "top: lost the connection to vigild: {why}"),
            Ended::Terminal(error) => write!(f, "top: terminal error: {error}"),
            Ended::Signal(name) => write!(f, "top: ended by {name}"),
        }
    }
}

/// What the helper tasks tell the screen.
enum Update {
    Facts(Box<Facts>, Instant),
    /// A call failed: why, and whether the connection itself failed (which
    /// a new connection may cure) rather than the daemon refusing.
    Lost(String, bool),
    Message(String),
    /// Log bytes, and the offset the follow goes on from.
    Log {
        name: String,
        stderr: bool,
        bytes: Vec<u8>,
        next: i64,
    },
}

/// Where top connects again after losing its connection.
pub struct Server {
    /// The `serverurl`.
    pub url: String,
    /// User name and password, if any.
    pub auth: Option<(String, String)>,
}

impl Server {
    async fn connect(&self) -> Result<ControlClient, String> {
        let auth = self.auth.as_ref().map(|(user, pass)| (user.as_str(), pass.as_str()));
        let connecting = vigil_rpc::connect(&self.url, auth);
        match tokio::time::timeout(QUERY_TIMEOUT, connecting).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {} s", QUERY_TIMEOUT.as_secs())),
        }
    }
}

/// The terminal in top's modes; dropping it restores the terminal, also when a
/// panic unwinds through top.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Restores the terminal on drop; built before the first mode changes so a
/// failure half-way still undoes what was done.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

impl Screen {
    fn open() -> io::Result<(Screen, Restore)> {
        let restore = Restore;
        terminal::enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        Ok((Screen { terminal }, restore))
    }
}

/// The long polls of one connection.
fn spawn_watchers(client: &ControlClient, updates: &mpsc::Sender<Update>) -> [JoinHandle<()>; 2] {
    let changed = Arc::new(Notify::new());
    [
        tokio::spawn(watch_changes(client.clone(), Arc::clone(&changed), updates.clone())),
        tokio::spawn(read_facts(client.clone(), changed, updates.clone())),
    ]
}

/// Runs top until the user quits (`Ok`) or something else ends it; `server`
/// is where it connects again after losing `client`'s connection.
pub async fn run(client: ControlClient, server: Server) -> Result<(), Ended> {
    let mut terminate = signal(SignalKind::terminate()).map_err(Ended::Terminal)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(Ended::Terminal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Ended::Terminal)?;
    let (mut screen, _restore) = Screen::open().map_err(Ended::Terminal)?;
    let (updates, mut received) = mpsc::channel::<Update>(64);
    let mut watchers = spawn_watchers(&client, &updates);
    let mut top =
        Top { client, model: Model::new(), updates, follower: None, log_next: -FOLLOW_BACKLOG };
    // Connected again and not yet answered: a second loss ends top.
    let mut reconnected = false;
    let mut keys = EventStream::new();
    let ended = loop {
        if let Err(error) = screen.terminal.draw(|frame| view::draw(frame, &top.model)) {
            break Err(Ended::Terminal(error));
        }
        tokio::select! {
            _ = terminate.recv() => break Err(Ended::Signal("SIGTERM")),
            _ = hangup.recv() => break Err(Ended::Signal("SIGHUP")),
            _ = interrupt.recv() => break Ok(()),
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) => {
                    if top.key(key) {
                        break Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => break Err(Ended::Terminal(error)),
                None => break Ok(()),
            },
            Some(update) = received.recv() => match update {
                Update::Lost(why, true) if !reconnected => match server.connect().await {
                    Ok(client) => {
                        reconnected = true;
                        for watcher in watchers {
                            watcher.abort();
                        }
                        // What the old connection's tasks still say is stale.
                        let (updates, fresh) = mpsc::channel::<Update>(64);
                        received = fresh;
                        watchers = spawn_watchers(&client, &updates);
                        top.client = client;
                        top.updates = updates;
                        top.resume_follower();
                        top.model.message = "connected to vigild again".to_owned();
                    }
                    Err(again) => break Err(Ended::Lost(format!("{why}; connecting again: {again}"))),
                },
                Update::Lost(why, _) => break Err(Ended::Lost(why)),
                Update::Facts(..) => {
                    reconnected = false;
                    top.update(update);
                }
                update => top.update(update),
            }
        }
    };
    for watcher in watchers {
        watcher.abort();
    }
    if let Some(follower) = top.follower.take() {
        follower.abort();
    }
    ended
}

/// The screen's state and what it drives.
struct Top {
    client: ControlClient,
    model: Model,
    updates: mpsc::Sender<Update>,
    follower: Option<JoinHandle<()>>,
    /// Where the log pane's follow goes on from.
    log_next: i64,
}

impl Top {
    /// Handles one key; true to quit.
    fn key(&mut self, key: KeyEvent) -> bool {
        if key.kind == KeyEventKind::Release {
            return false;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c' | 'd'))
        {
            return true;
        }
        if self.model.editing_filter {
            let mut filter = self.model.filter.clone();
            match key.code {
                KeyCode::Enter => self.model.editing_filter = false,
                KeyCode::Esc => {
                    self.model.editing_filter = false;
                    filter.clear();
                }
                KeyCode::Backspace => {
                    filter.pop();
                }
                KeyCode::Char(c) => filter.push(c),
                _ => {}
            }
            self.model.set_filter(filter);
            self.follow_selected();
            return false;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return true,
            KeyCode::Up | KeyCode::Char('k') => self.model.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.model.move_selection(1),
            KeyCode::PageUp => self.model.move_selection(-10),
            KeyCode::PageDown => self.model.move_selection(10),
            KeyCode::Home | KeyCode::Char('g') => self.model.select_end(false),
            KeyCode::End | KeyCode::Char('G') => self.model.select_end(true),
            KeyCode::Char('o') => self.model.next_sort(),
            KeyCode::Char('O') => self.model.reverse_sort(),
            KeyCode::Char('/') => self.model.editing_filter = true,
            KeyCode::Char('e') => {
                let name = self.model.log_name.clone();
                let stderr = !self.model.log_stderr;
                self.restart_follower(name, stderr);
            }
            KeyCode::Char('s') => self.act(Act::Start),
            KeyCode::Char('x') => self.act(Act::Stop),
            KeyCode::Char('r') => self.act(Act::Restart),
            _ => {}
        }
        self.follow_selected();
        false
    }

    /// Takes what a helper task reported (a lost connection is the caller's).
    fn update(&mut self, update: Update) {
        match update {
            Update::Facts(facts, at) => {
                self.model.update(&facts, at);
                self.follow_selected();
            }
            Update::Lost(..) => {}
            Update::Message(text) => self.model.message = text,
            Update::Log { name, stderr, bytes, next } => {
                if self.model.log_name.as_deref() == Some(name.as_str())
                    && self.model.log_stderr == stderr
                {
                    self.model.push_log(&bytes);
                    self.log_next = next;
                }
            }
        }
    }

    /// Points the log pane at the selected process, if it is not there yet.
    fn follow_selected(&mut self) {
        let selected = self.model.selected().map(str::to_owned);
        if selected != self.model.log_name {
            let stderr = self.model.log_stderr;
            self.restart_follower(selected, stderr);
        }
    }

    fn restart_follower(&mut self, name: Option<String>, stderr: bool) {
        self.model.follow_log(name.clone(), stderr);
        self.log_next = -FOLLOW_BACKLOG;
        self.spawn_follower();
    }

    /// Follows the pane's log again over a new connection, from where it was.
    fn resume_follower(&mut self) {
        self.spawn_follower();
    }

    fn spawn_follower(&mut self) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        if let Some(name) = self.model.log_name.clone() {
            let stderr = self.model.log_stderr;
            let task =
                follow(self.client.clone(), name, stderr, self.log_next, self.updates.clone());
            self.follower = Some(tokio::spawn(task));
        }
    }

    /// Starts, stops or restarts the selected process without blocking the
    /// screen; the outcome comes back as the footer's message.
    fn act(&mut self, act: Act) {
        let Some(name) = self.model.selected().map(str::to_owned) else { return };
        let client = self.client.clone();
        let updates = self.updates.clone();
        self.model.message = format!("{name}: {}", act.doing());
        tokio::spawn(async move {
            let text = act.run(&client, &name).await;
            let _ = updates.send(Update::Message(text)).await;
        });
    }
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Start,
    Stop,
    Restart,
}

impl Act {
    fn doing(self) -> &'static str {
        match self {
            Act::Start => "starting",
            Act::Stop => "stopping",
            Act::Restart => "restarting",
        }
    }

    /// Runs the call and words its outcome as vigilctl's commands do.
    async fn run(self, client: &ControlClient, name: &str) -> String {
        let specs = vec![NameSpec::parse(name)];
        let ctx = || context_with_timeout(WAIT_TIMEOUT);
        let results = match self {
            Act::Start => flatten(client.start(ctx(), specs, true).await)
                .map(|results| results_lines(render::Action::Start, &results)),
            Act::Stop => flatten(client.stop(ctx(), specs, true).await)
                .map(|results| results_lines(render::Action::Stop, &results)),
            Act::Restart => flatten(client.restart(ctx(), specs, true).await).map(|report| {
                let stopped = results_lines(render::Action::Stop, &report.stopped);
                let started = results_lines(render::Action::Start, &report.started);
                [stopped, started]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        };
        results.unwrap_or_else(|error| format!("{name}: ERROR ({error})"))
    }
}

fn results_lines(action: render::Action, results: &[vigil_rpc::ProcessResult]) -> String {
    let lines: Vec<String> =
        results.iter().map(|result| render::result_line(action, result).0).collect();
    lines.join("; ")
}

/// Why a call failed, for the closing message.
fn reason(error: &CallError) -> String {
    match error {
        CallError::Fault(ControlError::ShutdownState) => "vigild is shutting down".to_owned(),
        other => other.to_string(),
    }
}

/// Long-polls `changes` and pokes `changed` whenever the daemon's change
/// count moves.
async fn watch_changes(client: ControlClient, changed: Arc<Notify>, updates: mpsc::Sender<Update>) {
    let wait_ms = u64::try_from(CHANGE_WAIT.as_millis()).unwrap_or(u64::MAX);
    // The first call answers at once with the current count (any value will do
    // as `seen`, with no wait); later ones wait for it to move.
    let mut seen = None;
    loop {
        let ctx = context_with_timeout(CHANGE_WAIT + QUERY_TIMEOUT);
        let (since, wait) = match seen {
            Some(seen) => (seen, wait_ms),
            None => (0, 0),
        };
        match flatten(client.changes(ctx, since, wait).await) {
            Ok(count) => {
                if seen.is_some_and(|seen| seen != count) {
                    changed.notify_one();
                }
                seen = Some(count);
            }
            Err(error) => {
                let _ = updates.send(lost(&error)).await;
                return;
            }
        }
    }
}

/// [`Update::Lost`] for a failed call.
fn lost(error: &CallError) -> Update {
    Update::Lost(reason(error), matches!(error, CallError::Rpc(_)))
}

/// Reads the facts (with CPU and memory) now, then every [`REFRESH`] and after
/// every change, no closer together than [`MIN_INTERVAL`].
async fn read_facts(client: ControlClient, changed: Arc<Notify>, updates: mpsc::Sender<Update>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let asked = tokio::time::Instant::now();
        match flatten(client.facts(context_with_timeout(QUERY_TIMEOUT), true).await) {
            Ok(facts) => {
                let update = Update::Facts(Box::new(facts), Instant::now());
                if updates.send(update).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = updates.send(lost(&error)).await;
                return;
            }
        }
        tokio::select! {
            _ = tick.tick() => {}
            () = changed.notified() => {}
        }
        tokio::time::sleep_until(asked + MIN_INTERVAL).await;
    }
}

/// Follows one channel of one process into the log pane from `offset` (a
/// little before its end when negative), until aborted, the process has no
/// such log, or the connection is lost (the long polls report that).
async fn follow(
    client: ControlClient,
    name: String,
    stderr: bool,
    mut offset: i64,
    updates: mpsc::Sender<Update>,
) {
    let channel = if stderr { LogChannel::Stderr } else { LogChannel::Stdout };
    let target = LogTarget::Process { name: name.clone(), channel };
    let wait_ms = u64::try_from(FOLLOW_WAIT.as_millis()).unwrap_or(u64::MAX);
    loop {
        let ctx = context_with_timeout(FOLLOW_WAIT + QUERY_TIMEOUT);
        let reply = client
            .tail_follow(ctx, target.clone(), offset, vigil_rpc::MAX_LOG_CHUNK, wait_ms)
            .await;
        let chunk = match flatten(reply) {
            Ok(chunk) => chunk,
            Err(CallError::Rpc(_)) => return,
            Err(error) => {
                let note = match error {
                    CallError::Fault(ControlError::NoFile(_)) => "(no log file)".to_owned(),
                    other => format!("(log unavailable: {other})"),
                };
                let bytes = note.into_bytes();
                let _ = updates.send(Update::Log { name, stderr, bytes, next: offset }).await;
                return;
            }
        };
        offset = i64::try_from(chunk.next).unwrap_or(i64::MAX);
        if !chunk.bytes.0.is_empty() {
            let bytes = chunk.bytes.0;
            let update = Update::Log { name: name.clone(), stderr, bytes, next: offset };
            if updates.send(update).await.is_err() {
                return;
            }
        }
    }
}
