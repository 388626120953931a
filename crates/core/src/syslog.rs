//! The one place Vigil talks to the system logger (`syslog(3)`).
//!
//! The daemon sends its activity log here when `logfile=syslog`, and child
//! output goes here line by line for programs with `stdout_syslog` /
//! `stderr_syslog`, prefixed with the process name as supervisord does.
//! `syslog(3)` opens its connection lazily on the first message, so nothing
//! needs opening unless a specific ident is wanted ([`open`]).

use std::ffi::CString;

/// Opens the connection with `vigild` as the ident, tagged with our pid, in
/// the daemon facility.
pub fn open() {
    // openlog keeps the ident pointer, so it must live for the whole process.
    static IDENT: &std::ffi::CStr = c"vigild";
    // SAFETY: IDENT is 'static and NUL-terminated; openlog has no other preconditions.
    unsafe { libc::openlog(IDENT.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, libc::LOG_DAEMON) };
}

/// Sends one message at `priority` (`libc::LOG_INFO`, ...). A trailing newline
/// is dropped; interior NULs, which would cut the C string short, are written
/// as `\0`.
pub fn send(priority: libc::c_int, text: &str) {
    let text = text.trim_end_matches('\n');
    let c_text = if text.contains('\0') {
        CString::new(text.replace('\0', "\\0"))
    } else {
        CString::new(text)
    };
    if let Ok(c_text) = c_text {
        // SAFETY: the format is a literal "%s" and the argument a valid C string.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), c_text.as_ptr()) };
    }
}

/// One line of a child's output, as supervisord's child syslog handler sends
/// it: `<name> <line>` at INFO. Invalid UTF-8 is replaced, not dropped.
pub fn child_line(name: &str, line: &[u8]) {
    send(libc::LOG_INFO, &child_message(name, line));
}

/// The text [`child_line`] sends.
pub fn child_message(name: &str, line: &[u8]) -> String {
    format!("{name} {}", String::from_utf8_lossy(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_lines_carry_the_process_name() {
        assert_eq!(child_message("web_01", b"GET / 200"), "web_01 GET / 200");
        assert_eq!(child_message("x", b"bad \xff byte"), "x bad \u{fffd} byte");
    }
}
