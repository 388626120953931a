//! What happens to a child's output between its pipe and its log.
//!
//! [`capture`] is the one entry point process actors call for each new pipe.
//! An event listener's stdout is its protocol channel and goes to its pool
//! (`eventlistener.rs`), never to a log. Any other pipe is captured by its
//! [`ChannelLog`]; when the daemon or the program asks for it, through a
//! [`ChildOutput`] filter that, in this order:
//!
//! 1. strips ANSI escape sequences (`[supervisord] strip_ansi`), as a streaming
//!    state machine, so a sequence split across two reads is still removed;
//! 2. diverts text between `<!--XSUPERVISOR:BEGIN-->` and
//!    `<!--XSUPERVISOR:END-->` into a bounded buffer that becomes a
//!    `PROCESS_COMMUNICATION_*` event (`*_capture_maxbytes` > 0); the tokens may
//!    also be split across reads;
//! 3. sends what is logged to syslog line by line as `<name> <line>`
//!    (`*_syslog`), and publishes it as `PROCESS_LOG_*` (`*_events_enabled`);
//! 4. writes it in the program's format, echoes it to the daemon's stdout and,
//!    at `loglevel = debug`, to the activity log (`logformat.rs`).
//!
//! Syslog, events and a `ready_log` probe see the lines the child wrote, not
//! their formatted form. Processes that need none of this are captured
//! without a filter.
//!
//! A log file that cannot be written (refused by the rule in `logs/file.rs`,
//! or failing) shows in the program's status description, next to what
//! supervisorctl prints, besides the activity log.

use std::sync::Arc;

use tokio::net::unix::pipe;

use crate::context::Context;
use crate::events::{Event, OutputEvent};
use crate::logformat::{Formatter, Source};
use crate::logs::{Channel, LineSplitter, OutputFilter};
use crate::messages::ProcessShared;

/// Starts the capture of one pipe of the child `pid` of `shared`.
pub(crate) fn capture(
    ctx: &Context,
    shared: &Arc<ProcessShared>,
    channel: Channel,
    pipe: pipe::Receiver,
    pid: u32,
    on_line: Option<crate::logs::LineCallback>,
) -> Option<Capture> {
    if channel == Channel::Stdout && ctx.events.is_listener(&shared.config.group) {
        ctx.events.attach(shared, pid, pipe);
        return None;
    }
    let (log, settings) = match channel {
        Channel::Stdout => (&shared.stdout, &shared.config.stdout),
        Channel::Stderr => (&shared.stderr, &shared.config.stderr),
    };
    let source = Source { name: &shared.config.name, group: &shared.config.group, channel, pid };
    // Decided per pipe, as supervisord decides it per dispatcher.
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    let formatter = Formatter::new(&source, settings.format, settings.echo, debug);
    // A probe matches what the child wrote, not the formatted lines.
    let (ready_lines, on_line) = match on_line {
        Some(on_line) if formatter.as_ref().is_some_and(Formatter::rewrites) => {
            (Some(LineSplitter::new(on_line)), None)
        }
        on_line => (None, on_line),
    };
    let filter = ChildOutput {
        strip: ctx.events.strip_ansi().then(AnsiStripper::default),
        capture: (settings.capture_maxbytes > 0).then(|| {
            CaptureSplitter::new(usize::try_from(settings.capture_maxbytes).unwrap_or(usize::MAX))
        }),
        syslog: settings.syslog.then(|| {
            let name = shared.config.name.clone();
            LineSplitter::new(Box::new(move |line| crate::syslog::child_line(&name, line)))
        }),
        events_enabled: settings.events_enabled,
        bus: ctx.bus.clone(),
        group: shared.config.group.clone(),
        name: shared.config.name.clone(),
        pid,
        channel,
        formatter,
        ready_lines,
        stripped: Vec::new(),
        blocks: Vec::new(),
        logged: Vec::new(),
    };
    // `on_line` (a `ready_log` probe) sees the lines the log keeps.
    Some(if filter.is_noop() {
        log.capture_with(pipe, on_line)
    } else {
        log.capture_filtered(pipe, on_line, Box::new(filter))
    })
}

/// A running capture task; it ends with its pipe when a live upgrade stops
/// it (see [`crate::logs::stop_captures_for_handover`]).
pub(crate) type Capture = tokio::task::JoinHandle<Option<std::os::fd::OwnedFd>>;

/// Opens (or creates) the log files of a process before its child is spawned,
/// as supervisord does; the error is the spawn's error.
pub(crate) fn prepare_logs(shared: &ProcessShared) -> Result<(), String> {
    for (channel, log) in [(Channel::Stdout, &shared.stdout), (Channel::Stderr, &shared.stderr)] {
        log.prepare()
            .map_err(|error| format!("cannot open the {} log: {error}", channel.as_str()))?;
    }
    Ok(())
}

/// Appends the problems of a process's log files to its status description
/// (`pid 42, uptime 0:00:03; stdout log: refused to use ...`), unless the
/// description already says it (a failed spawn's error).
pub(crate) fn describe_log_problems(shared: &ProcessShared, description: &mut String) {
    if !crate::logs::any_problem() {
        return;
    }
    for (channel, log) in [(Channel::Stdout, &shared.stdout), (Channel::Stderr, &shared.stderr)] {
        if let Some(problem) = log.problem()
            && !description.contains(&problem)
        {
            if !description.is_empty() {
                description.push_str("; ");
            }
            description.push_str(&format!("{} log: {problem}", channel.as_str()));
        }
    }
}

/// The output filter of one pipe (see the module docs for the order).
struct ChildOutput {
    strip: Option<AnsiStripper>,
    capture: Option<CaptureSplitter>,
    syslog: Option<LineSplitter>,
    events_enabled: bool,
    bus: crate::events::Bus,
    group: String,
    name: String,
    pid: u32,
    channel: Channel,
    /// Formats, echo and debug copy (`None`: the log keeps the bytes as logged).
    formatter: Option<Formatter>,
    /// A `ready_log` probe's lines when the formatter rewrites the log.
    ready_lines: Option<LineSplitter>,
    /// Scratch space for the stripped bytes, reused across reads.
    stripped: Vec<u8>,
    /// Completed capture blocks, reused across reads.
    blocks: Vec<Vec<u8>>,
    /// Scratch space for the logged bytes before formatting, reused across reads.
    logged: Vec<u8>,
}

impl ChildOutput {
    fn is_noop(&self) -> bool {
        self.strip.is_none()
            && self.capture.is_none()
            && self.syslog.is_none()
            && !self.events_enabled
            && self.formatter.is_none()
    }

    fn output_event(&self, data: &[u8]) -> OutputEvent {
        OutputEvent {
            group: self.group.clone(),
            name: self.name.clone(),
            pid: self.pid,
            channel: self.channel,
            data: Arc::from(data),
        }
    }

    /// Everything after stripping: capture mode, then the logged bytes' side effects.
    fn process(&mut self, data: &[u8], out: &mut Vec<u8>, eof: bool) {
        let start = out.len();
        match self.capture.as_mut() {
            Some(capture) => {
                capture.feed(data, out, &mut self.blocks);
                if eof {
                    capture.finish(out);
                }
            }
            None => out.extend_from_slice(data),
        }
        for block in std::mem::take(&mut self.blocks) {
            let event = self.output_event(&block);
            crate::events::publish(&self.bus, Event::ProcessCommunication(event));
        }
        let mut formatted = std::mem::take(&mut self.logged);
        formatted.clear();
        let logged = match self.formatter.as_mut() {
            Some(formatter) => {
                // The logged bytes move aside; their formatted form takes their place.
                formatted.extend_from_slice(&out[start..]);
                out.truncate(start);
                formatter.feed(&formatted, out);
                if eof {
                    formatter.finish(out);
                }
                &formatted[..]
            }
            None => &out[start..],
        };
        if let Some(lines) = self.ready_lines.as_mut() {
            lines.feed(logged);
            if eof {
                lines.finish();
            }
        }
        if let Some(syslog) = self.syslog.as_mut() {
            syslog.feed(logged);
            if eof {
                syslog.finish();
            }
        }
        if self.events_enabled && !logged.is_empty() {
            let event = self.output_event(logged);
            crate::events::publish(&self.bus, Event::ProcessLog(event));
        }
        self.logged = formatted;
    }
}

impl OutputFilter for ChildOutput {
    fn filter(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match self.strip.as_mut() {
            Some(strip) => {
                let mut stripped = std::mem::take(&mut self.stripped);
                stripped.clear();
                strip.feed(data, &mut stripped);
                self.process(&stripped, out, false);
                self.stripped = stripped;
            }
            None => self.process(data, out, false),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let mut rest = Vec::new();
        if let Some(strip) = self.strip.as_mut() {
            strip.finish(&mut rest);
        }
        self.process(&rest, out, true);
    }
}

/// Removes ANSI control sequences (`ESC [` parameters, intermediates, final
/// byte) from a byte stream, across reads.
///
/// supervisord removes `ESC [` up to the next byte of a fixed list of common
/// final letters, which swallows text after a sequence ending in any other
/// letter; this follows ECMA-48 instead: any final byte `@`..`~` ends the
/// sequence, and a byte that cannot occur inside one ends it and is kept. An
/// `ESC` not followed by `[` is kept, as supervisord keeps it.
#[derive(Debug, Default)]
pub(crate) struct AnsiStripper {
    state: AnsiState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum AnsiState {
    #[default]
    Text,
    /// Just saw `ESC`.
    Escape,
    /// Inside `ESC [` ... until the final byte.
    Csi,
}

const ESC: u8 = 0x1b;

impl AnsiStripper {
    /// Appends `data` without escape sequences to `out`.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            match self.state {
                AnsiState::Text => match data.iter().position(|byte| *byte == ESC) {
                    None => {
                        out.extend_from_slice(data);
                        return;
                    }
                    Some(at) => {
                        out.extend_from_slice(&data[..at]);
                        self.state = AnsiState::Escape;
                        data = &data[at + 1..];
                    }
                },
                AnsiState::Escape => {
                    let byte = data[0];
                    data = &data[1..];
                    if byte == b'[' {
                        self.state = AnsiState::Csi;
                    } else if byte != ESC {
                        out.extend_from_slice(&[ESC, byte]);
                        self.state = AnsiState::Text;
                    } else {
                        // ESC ESC: the first one is plain text, the second may start a sequence.
                        out.push(ESC);
                    }
                }
                AnsiState::Csi => {
                    let byte = data[0];
                    data = &data[1..];
                    match byte {
                        // Parameter and intermediate bytes.
                        0x20..=0x3f => {}
                        // The final byte.
                        0x40..=0x7e => self.state = AnsiState::Text,
                        ESC => self.state = AnsiState::Escape,
                        // Not part of any sequence: the sequence was broken; keep the byte.
                        other => {
                            out.push(other);
                            self.state = AnsiState::Text;
                        }
                    }
                }
            }
        }
    }

    /// The stream ended: a lone trailing `ESC` is text; an unfinished sequence is dropped.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state == AnsiState::Escape {
            out.push(ESC);
        }
        self.state = AnsiState::Text;
    }
}

/// supervisord's capture-mode tokens.
pub(crate) const CAPTURE_BEGIN: &[u8] = b"<!--XSUPERVISOR:BEGIN-->";
pub(crate) const CAPTURE_END: &[u8] = b"<!--XSUPERVISOR:END-->";

/// Splits a stream into logged text and captured blocks (capture mode).
#[derive(Debug)]
pub(crate) struct CaptureSplitter {
    maxbytes: usize,
    capturing: bool,
    /// A tail of the last read that may be the start of the awaited token.
    carry: Vec<u8>,
    block: Vec<u8>,
}

impl CaptureSplitter {
    pub(crate) fn new(maxbytes: usize) -> CaptureSplitter {
        CaptureSplitter { maxbytes, capturing: false, carry: Vec::new(), block: Vec::new() }
    }

    /// Appends logged text to `out` and each completed block to `blocks`.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>, blocks: &mut Vec<Vec<u8>>) {
        let mut input = std::mem::take(&mut self.carry);
        input.extend_from_slice(data);
        let mut rest = &input[..];
        loop {
            let token = if self.capturing { CAPTURE_END } else { CAPTURE_BEGIN };
            if let Some(at) = find(rest, token) {
                self.emit(&rest[..at], out);
                if self.capturing {
                    blocks.push(std::mem::take(&mut self.block));
                }
                self.capturing = !self.capturing;
                rest = &rest[at + token.len()..];
                continue;
            }
            let keep = partial_suffix(rest, token);
            self.emit(&rest[..rest.len() - keep], out);
            self.carry = rest[rest.len() - keep..].to_vec();
            return;
        }
    }

    /// The stream ended: held-back text is logged; an unfinished block is lost,
    /// as in supervisord.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        let carry = std::mem::take(&mut self.carry);
        if !self.capturing {
            out.extend_from_slice(&carry);
        }
        self.block.clear();
        self.capturing = false;
    }

    fn emit(&mut self, segment: &[u8], out: &mut Vec<u8>) {
        if !self.capturing {
            out.extend_from_slice(segment);
            return;
        }
        // supervisord's BoundIO: past the bound, drop as many bytes from the
        // front as are being added.
        if self.block.len() + segment.len() > self.maxbytes {
            let drop = segment.len().min(self.block.len());
            self.block.drain(..drop);
        }
        self.block.extend_from_slice(segment);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Length of the longest proper suffix of `data` that is a prefix of `token`.
fn partial_suffix(data: &[u8], token: &[u8]) -> usize {
    (1..token.len().min(data.len() + 1)).rev().find(|n| data.ends_with(&token[..*n])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_all(chunks: &[&[u8]]) -> Vec<u8> {
        let mut stripper = AnsiStripper::default();
        let mut out = Vec::new();
        for chunk in chunks {
            stripper.feed(chunk, &mut out);
        }
        stripper.finish(&mut out);
        out
    }

    #[test]
    fn ansi_table() {
        let table: &[(&[u8], &[u8])] = &[
            (b"plain", b"plain"),
            (b"\x1b[31mred\x1b[0m", b"red"),
            (b"a\x1b[1;32;40mb", b"ab"),
            (b"\x1b[2Jclear\x1b[H", b"clear"),
            (b"\x1b[?25lcursor\x1b[?25h", b"cursor"),
            // Final bytes outside supervisord's list still end the sequence.
            (b"\x1b[2Xerase", b"erase"),
            // ESC without '[' is kept.
            (b"\x1b(B", b"\x1b(B"),
            (b"\x1b\x1b[0mx", b"\x1bx"),
            // A broken sequence keeps the byte that broke it.
            (b"\x1b[12\nnext", b"\nnext"),
            (b"trailing\x1b", b"trailing\x1b"),
            (b"unfinished\x1b[31", b"unfinished"),
            (b"", b""),
        ];
        for (input, expected) in table {
            assert_eq!(
                strip_all(&[input]),
                *expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn ansi_split_at_every_byte() {
        let input: &[u8] = b"x\x1b[1;31mhello\x1b[0m \x1b[?7h\x1b(world\x1b[K";
        let whole = strip_all(&[input]);
        assert_eq!(whole, b"xhello \x1b(world");
        for cut in 0..=input.len() {
            assert_eq!(strip_all(&[&input[..cut], &input[cut..]]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(strip_all(&bytes), whole);
    }

    fn split_all(chunks: &[&[u8]], maxbytes: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut splitter = CaptureSplitter::new(maxbytes);
        let (mut out, mut blocks) = (Vec::new(), Vec::new());
        for chunk in chunks {
            splitter.feed(chunk, &mut out, &mut blocks);
        }
        splitter.finish(&mut out);
        (out, blocks)
    }

    #[test]
    fn capture_table() {
        let (out, blocks) = split_all(
            &[b"before <!--XSUPERVISOR:BEGIN-->payload<!--XSUPERVISOR:END--> after"],
            100,
        );
        assert_eq!(out, b"before  after");
        assert_eq!(blocks, vec![b"payload".to_vec()]);

        let (out, blocks) = split_all(&[b"<!--XSUPERVISOR:BEGIN-->a<!--XSUPERVISOR:END--><!--XSUPERVISOR:BEGIN-->b<!--XSUPERVISOR:END-->"], 100);
        assert!(out.is_empty());
        assert_eq!(blocks, vec![b"a".to_vec(), b"b".to_vec()]);

        // An unfinished block is lost; a partial token at EOF is text.
        assert_eq!(split_all(&[b"x<!--XSUPERVISOR:BEGIN-->lost"], 100), (b"x".to_vec(), vec![]));
        assert_eq!(split_all(&[b"x<!--XSUPER"], 100), (b"x<!--XSUPER".to_vec(), vec![]));
        // `<` that turns out not to start a token is logged.
        assert_eq!(split_all(&[b"a<", b"b"], 100), (b"a<b".to_vec(), vec![]));
    }

    #[test]
    fn capture_tokens_split_at_every_byte() {
        let input: &[u8] = b"log1 <!--XSUPERVISOR:BEGIN-->data<!--XSUPERVISOR:END--> log2";
        for cut in 0..=input.len() {
            let (out, blocks) = split_all(&[&input[..cut], &input[cut..]], 100);
            assert_eq!(out, b"log1  log2", "cut at {cut}");
            assert_eq!(blocks, vec![b"data".to_vec()], "cut at {cut}");
        }
    }

    #[test]
    fn capture_buffer_is_bounded_like_boundio() {
        let (_, blocks) =
            split_all(&[b"<!--XSUPERVISOR:BEGIN-->abcd", b"ef", b"<!--XSUPERVISOR:END-->"], 4);
        // "abcd" fills the buffer; "ef" drops two bytes from the front.
        assert_eq!(blocks, vec![b"cdef".to_vec()]);
    }
}
