//! The opt-in shapes of a child's output: what a program asks for beyond
//! supervisord's byte-exact capture, applied by the output filter
//! (`output.rs`) to the bytes its log keeps.
//!
//! - `*_logfile_format = timestamped`: each line of the log file starts with
//!   the UTC time its first byte was read, RFC 3339 with milliseconds, then a
//!   space (`2026-12-04T17:32:44.123Z hello`). Streaming: nothing is held
//!   back, a partial line reaches the file at once and its rest later.
//! - `*_logfile_format = json`: one object per line,
//!   `{"ts","program","group","channel","pid","line"}`. The line is decoded
//!   as UTF-8 with every invalid sequence replaced by U+FFFD (lossy
//!   decoding), so the file is valid JSON whatever the child writes.
//! - `*_echo = true`: each line is also written to the daemon's stdout as
//!   `name | line`, one `write` of a whole line under the stdout lock (which
//!   the activity log's copy to stdout takes too), so two programs' bytes
//!   never share a line. The name is coloured when stdout is a terminal and
//!   `NO_COLOR` is unset or empty. The bytes are the child's, unchanged.
//! - At `loglevel = debug` and below, every chunk goes to the activity log as
//!   supervisord writes it: `'name' stdout output:` and the text on the next
//!   line, or `Undecodable: b'...'` (Python's bytes repr) when the chunk is
//!   not UTF-8.
//!
//! JSON and echo need whole lines: a per-channel [`Lines`] assembler holds
//! a partial line until its newline, the end of the stream, or
//! [`MAX_LINE`] bytes. A longer line is cut there (at a UTF-8 character
//! boundary when one is within 3 bytes) and each piece but the last is marked
//! as not ending its line: `"partial":true` in JSON, `name + piece` instead of
//! `name | piece` in the echo. The last line of a stream without a newline is
//! a whole line. So memory per channel is bounded by [`MAX_LINE`].

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use vigil_config::{ChildLogFormat, py_repr};

use crate::logs::{Channel, MAX_LINE};

/// The identity a formatted line carries.
#[derive(Debug, Clone)]
pub(crate) struct Source<'a> {
    /// The process name.
    pub(crate) name: &'a str,
    /// Its group.
    pub(crate) group: &'a str,
    pub(crate) channel: Channel,
    pub(crate) pid: u32,
}

/// The formats one channel asked for (see the module docs).
pub(crate) struct Formatter {
    format: ChildLogFormat,
    /// Timestamped: the next byte starts a line.
    at_line_start: bool,
    /// Whole lines, for JSON and the echo.
    lines: Option<Lines>,
    /// JSON: the fields after `ts`, up to `"line":`.
    json_fields: Vec<u8>,
    echo: Option<Echo>,
    /// Debug echo: the activity-log header, `'name' stdout output:`.
    debug_header: Option<String>,
    /// Scratch space for the time of the current read.
    now: String,
}

impl Formatter {
    /// `None` when nothing is asked beyond raw capture (the hot path stays
    /// untouched). `debug` says whether the activity log takes debug lines
    /// now; like supervisord, that is decided once per pipe.
    pub(crate) fn new(
        source: &Source<'_>,
        format: ChildLogFormat,
        echo: bool,
        debug: bool,
    ) -> Option<Formatter> {
        if format == ChildLogFormat::Raw && !echo && !debug {
            return None;
        }
        let needs_lines = format == ChildLogFormat::Json || echo;
        let mut json_fields = Vec::new();
        if format == ChildLogFormat::Json {
            json_fields.extend_from_slice(b",\"program\":");
            push_json_str(&mut json_fields, source.name);
            json_fields.extend_from_slice(b",\"group\":");
            push_json_str(&mut json_fields, source.group);
            json_fields.extend_from_slice(b",\"channel\":\"");
            json_fields.extend_from_slice(source.channel.as_str().as_bytes());
            json_fields
                .extend_from_slice(format!("\",\"pid\":{},\"line\":", source.pid).as_bytes());
        }
        let label = if source.group == source.name {
            source.name.to_owned()
        } else {
            format!("{}:{}", source.group, source.name)
        };
        Some(Formatter {
            format,
            at_line_start: true,
            lines: needs_lines.then(Lines::default),
            json_fields,
            echo: echo.then(|| Echo::new(&label, colour_stdout())),
            debug_header: debug
                .then(|| format!("{} {} output:", py_repr(source.name), source.channel.as_str())),
            now: String::new(),
        })
    }

    /// Whether the log gets something else than the bytes themselves.
    pub(crate) fn rewrites(&self) -> bool {
        self.format != ChildLogFormat::Raw
    }

    /// Appends what the log keeps of `data` to `out`, echoes its complete
    /// lines and, at debug, copies it to the activity log.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if let Some(header) = &self.debug_header {
            debug_echo(header, data);
        }
        if self.format != ChildLogFormat::Raw || self.lines.is_some() {
            self.now.clear();
            self.now.push_str(&now_rfc3339());
        }
        match self.format {
            ChildLogFormat::Raw => out.extend_from_slice(data),
            ChildLogFormat::Timestamped => self.timestamp(data, out),
            ChildLogFormat::Json => {}
        }
        let Formatter { format, lines, json_fields, echo, now, .. } = self;
        if let Some(lines) = lines {
            lines.feed(data, now, |line, ts, partial| {
                if *format == ChildLogFormat::Json {
                    json_record(out, ts, json_fields, line, partial);
                }
                if let Some(echo) = echo.as_mut() {
                    echo.line(line, partial);
                }
            });
        }
    }

    /// The stream ended: a held partial line is a whole line now.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        let Formatter { format, lines, json_fields, echo, .. } = self;
        if let Some(lines) = lines {
            lines.finish(|line, ts, partial| {
                if *format == ChildLogFormat::Json {
                    json_record(out, ts, json_fields, line, partial);
                }
                if let Some(echo) = echo.as_mut() {
                    echo.line(line, partial);
                }
            });
        }
        self.at_line_start = true;
    }

    fn timestamp(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            if self.at_line_start {
                out.extend_from_slice(self.now.as_bytes());
                out.push(b' ');
                self.at_line_start = false;
            }
            match data.iter().position(|byte| *byte == b'\n') {
                Some(newline) => {
                    out.extend_from_slice(&data[..=newline]);
                    self.at_line_start = true;
                    data = &data[newline + 1..];
                }
                None => {
                    out.extend_from_slice(data);
                    return;
                }
            }
        }
    }
}

/// Splits a stream into lines of at most [`MAX_LINE`] bytes, each with the
/// time its first byte was read.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
    /// When the held partial line started.
    started: String,
}

impl Lines {
    /// Hands every line completed by `data` to `emit(line, ts, partial)`
    /// (`partial`: a piece of a longer line, which goes on in the next one).
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        now: &str,
        mut emit: impl FnMut(&[u8], &str, bool),
    ) {
        while !data.is_empty() {
            if self.partial.is_empty() {
                self.started.clear();
                self.started.push_str(now);
            }
            if self.partial.len() == MAX_LINE {
                // Full: a newline now makes it a whole line, anything else
                // cuts it (so the cut does not depend on how reads fall).
                if data[0] == b'\n' {
                    emit(&self.partial, &self.started, false);
                    self.partial.clear();
                    data = &data[1..];
                } else {
                    let cut = utf8_cut(&self.partial);
                    emit(&self.partial[..cut], &self.started, true);
                    self.partial.drain(..cut);
                    // The rest of the line starts now.
                    self.started.clear();
                    self.started.push_str(now);
                }
                continue;
            }
            let room = MAX_LINE - self.partial.len();
            let window = &data[..data.len().min(room + 1)];
            match window.iter().position(|byte| *byte == b'\n') {
                Some(at) if self.partial.is_empty() => {
                    emit(&data[..at], &self.started, false);
                    data = &data[at + 1..];
                }
                Some(at) => {
                    self.partial.extend_from_slice(&data[..at]);
                    emit(&self.partial, &self.started, false);
                    self.partial.clear();
                    data = &data[at + 1..];
                }
                None => {
                    let take = data.len().min(room);
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
            }
        }
    }

    /// The stream ended: what is held is the last line.
    pub(crate) fn finish(&mut self, mut emit: impl FnMut(&[u8], &str, bool)) {
        if !self.partial.is_empty() {
            emit(&self.partial, &self.started, false);
            self.partial.clear();
        }
    }
}

/// Where to cut a full line buffer: before a UTF-8 sequence that its end
/// splits, so both pieces decode; at the end when there is none.
fn utf8_cut(buffer: &[u8]) -> usize {
    let tail_start = buffer.len().saturating_sub(3);
    match std::str::from_utf8(&buffer[tail_start..]) {
        Ok(_) => buffer.len(),
        Err(error) if error.error_len().is_none() => {
            let cut = tail_start + error.valid_up_to();
            // A sequence's lead byte: cut before it (never to nothing).
            if cut > 0 && buffer[cut] >= 0xc0 { cut } else { buffer.len() }
        }
        Err(_) => buffer.len(),
    }
}

/// The current UTC time, RFC 3339 with milliseconds.
fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// Appends `text` as a JSON string.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    // Writing to a Vec cannot fail, and a str always serializes.
    serde_json::to_writer(out, text).expect("a string serializes into memory");
}

fn json_record(out: &mut Vec<u8>, ts: &str, fields: &[u8], line: &[u8], partial: bool) {
    out.extend_from_slice(b"{\"ts\":\"");
    out.extend_from_slice(ts.as_bytes());
    out.push(b'"');
    out.extend_from_slice(fields);
    push_json_str(out, &String::from_utf8_lossy(line));
    if partial {
        out.extend_from_slice(b",\"partial\":true");
    }
    out.extend_from_slice(b"}\n");
}

/// Whether the echo colours names: stdout is a terminal and `NO_COLOR` is
/// unset or empty. Decided once: neither changes while the daemon runs.
fn colour_stdout() -> bool {
    static COLOUR: OnceLock<bool> = OnceLock::new();
    *COLOUR.get_or_init(|| {
        std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
    })
}

/// One channel's copy of its lines to the daemon's stdout.
struct Echo {
    /// `name | `, coloured or not.
    prefix: Vec<u8>,
    /// `name + `: a piece that does not end its line.
    partial_prefix: Vec<u8>,
    buffer: Vec<u8>,
}

/// Foreground colours for names, picked by a hash of the name so that a
/// program keeps its colour across restarts.
const COLOURS: [u8; 6] = [36, 32, 33, 35, 34, 31];

impl Echo {
    fn new(label: &str, colour: bool) -> Echo {
        let name = if colour {
            let hash = label.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
                (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
            });
            format!("\x1b[{}m{label}\x1b[0m", COLOURS[hash as usize % COLOURS.len()])
        } else {
            label.to_owned()
        };
        Echo {
            prefix: format!("{name} | ").into_bytes(),
            partial_prefix: format!("{name} + ").into_bytes(),
            buffer: Vec::new(),
        }
    }

    fn line(&mut self, line: &[u8], partial: bool) {
        self.buffer.clear();
        self.buffer.extend_from_slice(if partial { &self.partial_prefix } else { &self.prefix });
        self.buffer.extend_from_slice(line);
        self.buffer.push(b'\n');
        // One write under the lock the activity log's copy takes too. A
        // closed stdout must not stop capture.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&self.buffer).and_then(|()| stdout.flush());
    }
}

/// supervisord's debug copy of a chunk of output to the activity log.
fn debug_echo(header: &str, data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(text) => tracing::debug!("{header}\n{text}"),
        Err(_) => tracing::debug!("{header}\nUndecodable: {}", py_bytes_repr(data)),
    }
}

/// Python's `repr()` of a `bytes` value (`b'a\n\xff'`), as supervisord
/// shows output it cannot decode.
pub(crate) fn py_bytes_repr(data: &[u8]) -> String {
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') { b'"' } else { b'\'' };
    let mut out = String::with_capacity(data.len() + 3);
    out.push('b');
    out.push(char::from(quote));
    for &byte in data {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            byte if byte == quote => {
                out.push('\\');
                out.push(char::from(byte));
            }
            0x20..=0x7e => out.push(char::from(byte)),
            byte => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push(char::from(quote));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.feed(chunk, "t", |line, _, partial| out.push((line.to_vec(), partial)));
        }
        lines.finish(|line, _, partial| out.push((line.to_vec(), partial)));
        out
    }

    #[test]
    fn lines_are_assembled_across_reads() {
        assert_eq!(
            collect(&[b"a", b"b\nc", b"\n\nd"]),
            vec![
                (b"ab".to_vec(), false),
                (b"c".to_vec(), false),
                (b"".to_vec(), false),
                (b"d".to_vec(), false)
            ]
        );
        assert!(collect(&[b""]).is_empty());
    }

    #[test]
    fn a_long_line_is_cut_into_marked_pieces() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\nnext\n");
        for chunks in [vec![&input[..]], input.chunks(7000).collect::<Vec<_>>()] {
            let lines = collect(&chunks);
            let sizes: Vec<_> = lines.iter().map(|(l, p)| (l.len(), *p)).collect();
            assert_eq!(sizes, [(MAX_LINE, true), (MAX_LINE, true), (10, false), (4, false)]);
            let joined: Vec<u8> = lines[..3].iter().flat_map(|(l, _)| l.clone()).collect();
            assert_eq!(joined, long);
        }
        // Exactly MAX_LINE bytes then a newline is one whole line, however the reads fall.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        for cut in [1, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1] {
            let (a, b) = exact.split_at(cut);
            let sizes: Vec<_> = collect(&[a, b]).iter().map(|(l, p)| (l.len(), *p)).collect();
            assert_eq!(sizes, [(MAX_LINE, false)], "cut at {cut}");
        }
    }

    #[test]
    fn cuts_keep_utf8_characters_whole() {
        let mut input = vec![b'x'; MAX_LINE - 1];
        input.extend_from_slice("é€".as_bytes());
        let lines = collect(&[&input]);
        assert_eq!(lines[0].0.len(), MAX_LINE - 1);
        assert!(lines[0].1);
        assert_eq!(lines[1], ("é€".as_bytes().to_vec(), false));
        // Invalid bytes at the cut are not a character to keep whole.
        let mut invalid = vec![b'x'; MAX_LINE - 1];
        invalid.extend_from_slice(b"\xff\xfe");
        assert_eq!(collect(&[&invalid])[0].0.len(), MAX_LINE);
    }

    fn source() -> Source<'static> {
        Source { name: "web", group: "web", channel: Channel::Stdout, pid: 42 }
    }

    #[test]
    fn json_lines_are_valid_for_any_bytes() {
        let mut formatter = Formatter::new(&source(), ChildLogFormat::Json, false, false).unwrap();
        let mut out = Vec::new();
        formatter.feed(b"plain \"quoted\"\n\xff\xfebad \x01\ttab\npart", &mut out);
        formatter.feed(b"ial", &mut out);
        formatter.finish(&mut out);
        let text = String::from_utf8(out).expect("JSON lines are UTF-8");
        let records: Vec<serde_json::Value> =
            text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        let lines: Vec<&str> = records.iter().map(|r| r["line"].as_str().unwrap()).collect();
        assert_eq!(lines, ["plain \"quoted\"", "\u{fffd}\u{fffd}bad \u{1}\ttab", "partial"]);
        let first = &records[0];
        assert_eq!(first["program"], "web");
        assert_eq!(first["group"], "web");
        assert_eq!(first["channel"], "stdout");
        assert_eq!(first["pid"], 42);
        let ts = first["ts"].as_str().unwrap();
        assert!(
            ts.parse::<jiff::Timestamp>().is_ok() && ts.len() == 24 && ts.ends_with('Z'),
            "{ts}"
        );
        assert!(records.iter().all(|r| r.get("partial").is_none()));
    }

    #[test]
    fn timestamps_start_every_line_without_holding_bytes_back() {
        let mut formatter =
            Formatter::new(&source(), ChildLogFormat::Timestamped, false, false).unwrap();
        let mut out = Vec::new();
        formatter.feed(b"one\ntw", &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.ends_with(" tw"), "a partial line is written at once: {text:?}");
        formatter.feed(b"o\n\nthree", &mut out);
        formatter.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 4);
        for (line, body) in lines.iter().zip(["one", "two", "", "three"]) {
            let (ts, rest) = line.split_once(' ').unwrap();
            assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{line:?}");
            assert_eq!(rest, body);
        }
    }

    #[test]
    fn raw_without_extras_needs_no_formatter() {
        assert!(Formatter::new(&source(), ChildLogFormat::Raw, false, false).is_none());
        let mut raw_debug = Formatter::new(&source(), ChildLogFormat::Raw, false, true).unwrap();
        assert!(!raw_debug.rewrites());
        let mut out = Vec::new();
        raw_debug.feed(b"\xffbytes as written\n", &mut out);
        assert_eq!(out, b"\xffbytes as written\n");
    }

    #[test]
    fn echo_prefixes() {
        let plain = Echo::new("web", false);
        assert_eq!(plain.prefix, b"web | ");
        assert_eq!(plain.partial_prefix, b"web + ");
        let coloured = Echo::new("web", true);
        let text = String::from_utf8(coloured.prefix).unwrap();
        assert!(text.starts_with("\x1b[") && text.ends_with("web\x1b[0m | "), "{text:?}");
    }

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(py_bytes_repr(b"hello\n"), "b'hello\\n'");
        assert_eq!(
            py_bytes_repr(b"\xff\xfe\x00\x7f~ \t\r\\"),
            "b'\\xff\\xfe\\x00\\x7f~ \\t\\r\\\\'"
        );
        assert_eq!(py_bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(py_bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(py_bytes_repr("é".as_bytes()), "b'\\xc3\\xa9'");
    }
}
