//! `vigil-test-child`: the helper program the tests supervise instead of shell tools.
//!
//! Flags run in the order given and compose, e.g.
//! `vigil-test-child --echo hi --ignore-term --sleep 30 --exit 3`:
//!
//! | flag | effect |
//! |---|---|
//! | `--exit N` | exit now with code N (the default at the end is 0) |
//! | `--sleep SECS` | sleep (fractions allowed) |
//! | `--ignore-term` | ignore SIGTERM, then print `ignoring TERM` |
//! | `--ready` | print `ready` |
//! | `--zombie PID` | SIGTERM PID (a child of this process) and wait until it is a zombie, without collecting it |
//! | `--exec PROGRAM ARGS...` | execute PROGRAM with the remaining arguments, in this process |
//! | `--echo TEXT` | print TEXT on stdout |
//! | `--write-stderr TEXT` | print TEXT on stderr |
//! | `--write-bytes N` | write N bytes of the pattern below to stdout as fast as possible |
//! | `--fork-grandchild SECS` | fork a grandchild (same process group, stdio on /dev/null) that sleeps SECS; print `grandchild=<pid>` |
//! | `--orphan SECS` | fork such a grandchild, print `orphan=<pid>`, then exit 0 at once, leaving it to a subreaper |
//! | `--crash-after SECS` | sleep, then die of SIGABRT (core dumps disabled) |
//! | `--print-env NAME` | print `NAME=value` or `NAME is unset` |
//! | `--print-ids` | print `uid=U gid=G groups=A,B umask=0022 cwd=/path` (groups sorted) |
//! | `--print-fds` | print `fds=0,1,2` (the open descriptors, from /proc/self/fd) |
//! | `--print-sigign` | print `sigign=<hex>` (ignored signals, from /proc/self/status) |
//! | `--print-sigblk` | print `sigblk=<hex>` (blocked signals, from /proc/self/status) |
//! | `--listen-tcp PORT_OR_FILE` | listen on 127.0.0.1:PORT, or on a free port written to FILE; accept and close connections in the background; print `listening=<port>` |
//! | `--notify-ready` | send `READY=1` to `$NOTIFY_SOCKET`; print `notified` |
//! | `--stdin-echo` | copy stdin lines to stdout until EOF |
//! | `--fork-inherit SECS` | fork a grandchild that keeps our stdout/stderr, sleeps SECS, prints `grandchild done` and exits; print `grandchild=<pid>` |
//! | `--write-hex HEX` | write the bytes HEX (e.g. `ff00410a`) to stdout as they are |
//! | `--count N SECS` | print `line 000001` ... `line N` (six digits or more), one every SECS |
//! | `--accept-stdin` | fd 0 is a listening TCP socket (`[fcgi-program:x]`): print `accepting port=<port>`, then answer each connection with `pid=<pid>\n` and close it, forever |
//! | `--symlink TARGET LINK` | replace LINK (if it exists) with a symbolic link to TARGET, as `ln -sfn`; print `linked` |
//! | `--rename FROM TO` | rename FROM to TO; print `renamed` |
//! | `--wait-file PATH` | wait (at most 60 s, else exit 3) until PATH exists |
//! | `--event-listener FILE` | speak supervisord's event listener protocol on stdin/stdout until EOF, appending each envelope header line and payload (plus `\n`) to FILE; answers `FAIL` once to a payload ending in `reject-once`, exits without answering the first time a payload ends in `exit-once` (remembered in `FILE.exited`), else answers `OK` |
//! | `--hog MB` | allocate and touch MB MiB of memory, one MiB at a time, and keep it; print `hogged MB` |
//! | `--setsid-grandchild SECS` | fork a grandchild that leaves our session and process group (`setsid`) and sleeps SECS; print `escaped=<pid>` |
//! | `--forks N SECS` | fork up to N grandchildren that sleep SECS (stdio on /dev/null), stopping at the first refusal; print `forked=K` and, if one was refused, `refused=<errno>` |
//!
//! The `--write-bytes` pattern is 16-byte records: record k is k as 15 lowercase hex
//! digits followed by `\n`, so the byte at offset i is record(i / 16)[i % 16]. Tests
//! rebuild it to compare captured logs byte for byte.

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => {
            let _ = std::io::stdout().flush();
            ExitCode::from(code)
        }
        Err(message) => {
            eprintln!("vigil-test-child: {message}");
            ExitCode::from(2)
        }
    }
}

fn value<'a>(args: &'a [String], index: usize, flag: &str) -> Result<&'a str, String> {
    args.get(index).map(String::as_str).ok_or_else(|| format!("{flag} needs a value"))
}

fn number<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{flag}: bad number {text:?}"))
}

/// SIGTERMs `pid`, a child of this process, and waits (at most 60 s) until
/// it is a zombie, without collecting it.
fn make_zombie(pid: i32) -> Result<(), String> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| format!("--zombie: kill {pid}: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("--zombie: {pid}: {e}"))?;
        if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) {
            return Ok(());
        }
        sleep_secs(0.001);
    }
    Err(format!("--zombie: {pid} did not exit"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run(args: &[String]) -> Result<u8, String> {
    let mut index = 0;
    while index < args.len() {
        let flag = args[index].as_str();
        index += 1;
        match flag {
            "--exit" => {
                let code: i32 = number(value(args, index, flag)?, flag)?;
                let _ = std::io::stdout().flush();
                std::process::exit(code);
            }
            "--sleep" => {
                sleep_secs(number(value(args, index, flag)?, flag)?);
                index += 1;
            }
            "--ignore-term" => {
                // SAFETY: installing SIG_IGN has no handler code to be unsafe in.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
                say("ignoring TERM");
            }
            "--ready" => say("ready"),
            "--zombie" => {
                let pid: i32 = number(value(args, index, flag)?, flag)?;
                make_zombie(pid)?;
                index += 1;
            }
            "--exec" => {
                let argv: Vec<std::ffi::CString> = args[index..]
                    .iter()
                    .map(|arg| std::ffi::CString::new(arg.as_bytes()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--exec: {e}"))?;
                let program = argv.first().ok_or("--exec needs a program")?;
                let error = nix::unistd::execv(program, &argv).unwrap_err();
                return Err(format!("--exec {}: {error}", args[index]));
            }
            "--echo" => {
                say(value(args, index, flag)?);
                index += 1;
            }
            "--write-stderr" => {
                // One write: stderr is unbuffered, and `writeln!` would write
                // the text and its newline apart, which a reader may see as
                // two chunks.
                let line = format!("{}\n", value(args, index, flag)?);
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                index += 1;
            }
            "--write-bytes" => {
                write_pattern(number(value(args, index, flag)?, flag)?)?;
                index += 1;
            }
            "--fork-grandchild" => {
                let pid = fork_sleeper(number(value(args, index, flag)?, flag)?)?;
                say(&format!("grandchild={pid}"));
                index += 1;
            }
            "--orphan" => {
                let pid = fork_sleeper(number(value(args, index, flag)?, flag)?)?;
                say(&format!("orphan={pid}"));
                let _ = std::io::stdout().flush();
                std::process::exit(0);
            }
            "--crash-after" => {
                sleep_secs(number(value(args, index, flag)?, flag)?);
                let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                // SAFETY: setrlimit with a valid struct; abort never returns.
                unsafe {
                    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                    libc::abort();
                }
            }
            "--print-env" => {
                let name = value(args, index, flag)?;
                match std::env::var(name) {
                    Ok(found) => say(&format!("{name}={found}")),
                    Err(_) => say(&format!("{name} is unset")),
                }
                index += 1;
            }
            "--print-ids" => say(&ids()),
            "--print-fds" => say(&open_fds()?),
            "--print-sigign" => say(&format!("sigign={}", status_field("SigIgn")?)),
            "--print-sigblk" => say(&format!("sigblk={}", status_field("SigBlk")?)),
            "--listen-tcp" => {
                let port = listen(value(args, index, flag)?)?;
                say(&format!("listening={port}"));
                index += 1;
            }
            "--notify-ready" => {
                notify_ready()?;
                say("notified");
            }
            "--fork-inherit" => {
                let secs: f64 = number(value(args, index, flag)?, flag)?;
                let _ = std::io::stdout().flush();
                // SAFETY: the child sleeps, writes to its inherited stdout and
                // leaves with _exit; no locks are taken after the fork.
                match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
                    nix::unistd::ForkResult::Child => {
                        sleep_secs(secs);
                        let line = b"grandchild done\n";
                        // SAFETY: writing a static buffer to fd 1, then _exit.
                        unsafe {
                            libc::write(1, line.as_ptr().cast(), line.len());
                            libc::_exit(0)
                        }
                    }
                    nix::unistd::ForkResult::Parent { child } => {
                        say(&format!("grandchild={child}"));
                    }
                }
                index += 1;
            }
            "--write-hex" => {
                let hex = value(args, index, flag)?;
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|at| u8::from_str_radix(hex.get(at..at + 2).unwrap_or("?"), 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| format!("--write-hex: bad hex {hex:?}"))?;
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("writing stdout: {e}"))?;
                index += 1;
            }
            "--symlink" => {
                let (target, link) = (value(args, index, flag)?, value(args, index + 1, flag)?);
                // Again if the name was taken between the two steps (vigild
                // makes a missing log file soon after the spawn), as an
                // attacker racing it would.
                loop {
                    match std::fs::remove_file(link) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(format!("removing {link}: {e}")),
                    }
                    match std::os::unix::fs::symlink(target, link) {
                        Ok(()) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(format!("linking {link} to {target}: {e}")),
                    }
                }
                say("linked");
                index += 2;
            }
            "--rename" => {
                let (from, to) = (value(args, index, flag)?, value(args, index + 1, flag)?);
                std::fs::rename(from, to).map_err(|e| format!("renaming {from} to {to}: {e}"))?;
                say("renamed");
                index += 2;
            }
            "--wait-file" => {
                let path = std::path::Path::new(value(args, index, flag)?);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !path.exists() {
                    if std::time::Instant::now() > deadline {
                        std::process::exit(3);
                    }
                    sleep_secs(0.01);
                }
                index += 1;
            }
            "--accept-stdin" => accept_stdin()?,
            "--event-listener" => {
                event_listener(value(args, index, flag)?)?;
                index += 1;
            }
            "--count" => {
                let lines: u64 = number(value(args, index, flag)?, flag)?;
                let interval: f64 = number(value(args, index + 1, flag)?, flag)?;
                for line in 1..=lines {
                    say(&format!("line {line:06}"));
                    sleep_secs(interval);
                }
                index += 2;
            }
            "--hog" => {
                let megabytes: usize = number(value(args, index, flag)?, flag)?;
                let mut kept: Vec<Vec<u8>> = Vec::with_capacity(megabytes);
                for _ in 0..megabytes {
                    // Non-zero bytes, so every page is really backed.
                    kept.push(vec![0x5a; 1 << 20]);
                }
                say(&format!("hogged {}", kept.len()));
                // Held until the process ends.
                std::mem::forget(kept);
                index += 1;
            }
            "--setsid-grandchild" => {
                let secs: f64 = number(value(args, index, flag)?, flag)?;
                let pid = fork_then(secs, true)?;
                say(&format!("escaped={pid}"));
                index += 1;
            }
            "--forks" => {
                let wanted: u32 = number(value(args, index, flag)?, flag)?;
                let secs: f64 = number(value(args, index + 1, flag)?, flag)?;
                let mut forked = 0;
                let mut refused = None;
                while forked < wanted {
                    match fork_then(secs, false) {
                        Ok(_) => forked += 1,
                        Err(error) => {
                            refused = Some(error);
                            break;
                        }
                    }
                }
                say(&format!("forked={forked}"));
                if let Some(error) = refused {
                    say(&format!("refused={error}"));
                }
                index += 2;
            }
            "--stdin-echo" => {
                let stdin = std::io::stdin();
                for line in stdin.lock().lines() {
                    let line = line.map_err(|e| format!("reading stdin: {e}"))?;
                    say(&line);
                }
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(0)
}

/// A field of /proc/self/status, trimmed.
fn status_field(name: &str) -> Result<String, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    let prefix = format!("{name}:");
    Ok(status
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(str::trim)
        .unwrap_or("?")
        .to_owned())
}

/// Sleeps with nanosleep, resuming after signal interruptions.
fn sleep_secs(secs: f64) {
    if secs.is_nan() || secs <= 0.0 {
        return;
    }
    let mut request = libc::timespec {
        tv_sec: secs.trunc() as libc::time_t,
        tv_nsec: (secs.fract() * 1e9) as libc::c_long,
    };
    loop {
        let mut remaining = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: both pointers are valid timespecs on our stack.
        if unsafe { libc::nanosleep(&request, &mut remaining) } == 0 {
            return;
        }
        request = remaining;
    }
}

/// Record `k` of the pattern: 15 hex digits and a newline.
fn record(k: u64, out: &mut [u8]) {
    const HEX: &[u8] = b"0123456789abcdef";
    for (position, byte) in out[..15].iter_mut().enumerate() {
        *byte = HEX[((k >> ((14 - position) * 4)) & 0xf) as usize];
    }
    out[15] = b'\n';
}

fn write_pattern(total: u64) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < total {
        let n = (total - offset).min(buf.len() as u64) as usize;
        // `offset` stays a multiple of the buffer size, itself a multiple of 16.
        for (index, chunk) in buf.chunks_mut(16).enumerate() {
            record(offset / 16 + index as u64, chunk);
        }
        out.write_all(&buf[..n]).map_err(|e| format!("writing stdout: {e}"))?;
        offset += n as u64;
    }
    out.flush().map_err(|e| format!("flushing stdout: {e}"))
}

/// Forks a grandchild that sleeps `secs` with its stdio on /dev/null (so it does not
/// hold the log pipes open), in our process group.
fn fork_sleeper(secs: f64) -> Result<i32, String> {
    fork_then(secs, false)
}

/// [`fork_sleeper`], the grandchild first leaving our session and process
/// group when `escape`.
fn fork_then(secs: f64, escape: bool) -> Result<i32, String> {
    let _ = std::io::stdout().flush();
    // SAFETY: the child only calls async-signal-safe functions (open, dup2,
    // nanosleep, _exit) before exiting.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: see above.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                }
            }
            if escape {
                // SAFETY: setsid(2) has no memory effects.
                unsafe { libc::setsid() };
            }
            sleep_secs(secs);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

fn ids() -> String {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let mut groups = Vec::new();
    // SAFETY: getgroups(0, NULL) returns the count; then fills a buffer that large.
    unsafe {
        let count = libc::getgroups(0, std::ptr::null_mut());
        if count > 0 {
            groups.resize(count as usize, 0);
            let got = libc::getgroups(count, groups.as_mut_ptr());
            groups.truncate(got.max(0) as usize);
        }
    }
    groups.sort_unstable();
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    // SAFETY: umask only swaps the process mask; read it and put it back.
    let mask = unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask
    };
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
    format!("uid={uid} gid={gid} groups={} umask={mask:04o} cwd={cwd}", groups.join(","))
}

fn open_fds() -> Result<String, String> {
    // Collect first: the directory handle itself is an fd while iterating.
    let entries: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("/proc/self/fd: {e}"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let mut fds: Vec<i32> = entries
        .iter()
        .filter_map(|name| name.parse().ok())
        // SAFETY: fcntl(F_GETFD) only queries; a closed fd (the listing's own) fails.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .collect();
    fds.sort_unstable();
    let fds: Vec<String> = fds.iter().map(i32::to_string).collect();
    Ok(format!("fds={}", fds.join(",")))
}

fn listen(target: &str) -> Result<u16, String> {
    let (listener, port_file) = match target.parse::<u16>() {
        Ok(port) => (TcpListener::bind(("127.0.0.1", port)), None),
        Err(_) => (TcpListener::bind(("127.0.0.1", 0)), Some(target)),
    };
    let listener = listener.map_err(|e| format!("listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| format!("listen: {e}"))?.port();
    if let Some(file) = port_file {
        // Write then rename, so a test polling the file never reads half a number.
        let partial = format!("{file}.partial");
        std::fs::write(&partial, port.to_string()).map_err(|e| format!("{partial}: {e}"))?;
        std::fs::rename(&partial, file).map_err(|e| format!("{file}: {e}"))?;
    }
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    Ok(port)
}

fn notify_ready() -> Result<(), String> {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let target = std::env::var("NOTIFY_SOCKET").map_err(|_| "NOTIFY_SOCKET is unset".to_owned())?;
    let socket = UnixDatagram::unbound().map_err(|e| format!("socket: {e}"))?;
    let address = if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(&target)
    }
    .map_err(|e| format!("NOTIFY_SOCKET {target:?}: {e}"))?;
    socket.send_to_addr(b"READY=1", &address).map_err(|e| format!("notify: {e}"))?;
    Ok(())
}

/// The `--event-listener` loop (see the module docs).
fn event_listener(record_to: &str) -> Result<(), String> {
    use std::io::Read;
    let mut record = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(record_to)
        .map_err(|e| format!("{record_to}: {e}"))?;
    let mut stdin = std::io::stdin().lock();
    let mut rejected = std::collections::HashSet::new();
    // Each message in one write(2): std's stdout is line-buffered, and would
    // write `RESULT 2\nOK` as two, which a daemon may read as two chunks (and
    // log as two at loglevel debug).
    let mut out = std::os::fd::AsFd::as_fd(&std::io::stdout())
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| format!("stdout: {e}"))?;
    loop {
        out.write_all(b"READY\n").map_err(|e| e.to_string())?;
        let mut header = String::new();
        if stdin.read_line(&mut header).map_err(|e| format!("reading a header: {e}"))? == 0 {
            return Ok(());
        }
        let length: usize = header
            .split_whitespace()
            .find_map(|token| token.strip_prefix("len:"))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no len in header {header:?}"))?;
        // `len` counts characters: read UTF-8 sequences until that many arrived.
        let mut payload = Vec::new();
        for _ in 0..length {
            let mut first = [0u8; 1];
            stdin.read_exact(&mut first).map_err(|e| format!("reading a payload: {e}"))?;
            let extra = match first[0] {
                0xf0..=0xff => 3,
                0xe0..=0xef => 2,
                0xc0..=0xdf => 1,
                _ => 0,
            };
            payload.push(first[0]);
            let mut rest = vec![0u8; extra];
            stdin.read_exact(&mut rest).map_err(|e| format!("reading a payload: {e}"))?;
            payload.extend_from_slice(&rest);
        }
        let mut entry = header.into_bytes();
        entry.extend_from_slice(&payload);
        entry.push(b'\n');
        record.write_all(&entry).map_err(|e| format!("{record_to}: {e}"))?;
        if payload.ends_with(b"exit-once") {
            let marker = format!("{record_to}.exited");
            if std::fs::OpenOptions::new().write(true).create_new(true).open(&marker).is_ok() {
                std::process::exit(0);
            }
        }
        let serial =
            entry.split(|b| *b == b' ').find(|t| t.starts_with(b"serial:")).map(<[u8]>::to_vec);
        let answer: &[u8] = if payload.ends_with(b"reject-once") && rejected.insert(serial) {
            b"RESULT 4\nFAIL"
        } else {
            b"RESULT 2\nOK"
        };
        out.write_all(answer).map_err(|e| e.to_string())?;
    }
}

/// The `--accept-stdin` loop (see the module docs).
fn accept_stdin() -> Result<(), String> {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 0 is ours for the rest of the process; nothing else uses stdin.
    let listener = unsafe { TcpListener::from_raw_fd(0) };
    let port = listener.local_addr().map_err(|e| format!("fd 0 is not a TCP socket: {e}"))?.port();
    say(&format!("accepting port={port}"));
    let reply = format!("pid={}\n", std::process::id());
    loop {
        let (mut stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let _ = stream.write_all(reply.as_bytes());
    }
}
