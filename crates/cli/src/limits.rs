//! How long vigilctl waits on the daemon and how much log it shows by default;
//! shared by the commands and the foreground session.

use std::time::Duration;

/// Deadline for queries.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for calls that wait on processes (start/stop/restart/update):
/// supervisorctl waits as long as it takes, so effectively unbounded.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How long one `tail -f` long-poll waits in the daemon.
pub const FOLLOW_WAIT: Duration = Duration::from_secs(20);
/// Bytes `tail` shows by default.
pub const TAIL_BYTES: i64 = 1600;
/// How far back `tail -f` and `fg` start (supervisord's `/logtail` backlog).
pub const FOLLOW_BACKLOG: i64 = 1024;
