//! Building the members of a group: each process's shared record with its log
//! channels opened, before any actor exists.
//!
//! The supervisor does it for the groups of the first config, the handle for a
//! group added later, `update` for a member replaced with new settings: each
//! opens the channels the same way (a named file, an AUTO file in `childlogdir`,
//! or no file), and each reports a log that cannot be opened as the same error.

use std::sync::Arc;

use vigil_config::{GroupConfig, ProcessConfig, Supervisord};

use crate::error::CoreError;
use crate::logs::{self, Channel, ChannelLog};
use crate::messages::{GroupEntry, ProcessShared, Queued};

/// Bytes of recent output kept in memory per channel for `tail`. Allocated
/// lazily, as output arrives.
pub const TAIL_RING_BYTES: usize = 64 * 1024;

/// Opens the log channels of every process of `group` and wraps each process
/// in its shared state. The processes' settings move into the members, leaving
/// `group.processes` empty (see `GroupEntry::config`).
pub(crate) fn build_members(
    group: &mut GroupConfig,
    settings: &Supervisord,
) -> Result<Vec<Arc<ProcessShared>>, CoreError> {
    let processes = std::mem::take(&mut group.processes);
    let mut members = Vec::with_capacity(processes.len());
    for process in processes {
        let stdout = open_channel(&process, Channel::Stdout, settings)?;
        let stderr = if process.redirect_stderr {
            // Everything arrives on stdout; this channel stays empty.
            ChannelLog::open(None, 0, 0, 0).map_err(|e| log_error(&process, Channel::Stderr, e))?
        } else {
            open_channel(&process, Channel::Stderr, settings)?
        };
        members.push(Arc::new(ProcessShared::new(process, stdout, stderr)));
    }
    Ok(members)
}

/// A queued group's entry, its members built now if they were not
/// ([`Queued::Unbuilt`]).
pub(crate) fn build_queued(queued: Queued) -> Result<Arc<GroupEntry>, CoreError> {
    match queued {
        Queued::Built(entry) => Ok(entry),
        Queued::Unbuilt(mut config, settings) => {
            let members = build_members(&mut config, &settings)?;
            Ok(GroupEntry::new(config, members))
        }
    }
}

pub(crate) fn open_channel(
    process: &ProcessConfig,
    channel: Channel,
    settings: &Supervisord,
) -> Result<ChannelLog, CoreError> {
    let config = match channel {
        Channel::Stdout => &process.stdout,
        Channel::Stderr => &process.stderr,
    };
    let auto = logs::AutoLog {
        childlogdir: &settings.childlogdir,
        program: &process.name,
        channel,
        identifier: &settings.identifier,
    };
    let (carried_path, layout) = crate::handover::carried_log(&process.namespec(), channel);
    // After a live upgrade the log goes on from the layout carried for it,
    // if it is still the same file under the same settings.
    if let Some(layout) = layout {
        let same = match &config.logfile {
            vigil_config::LogTarget::Path(path) => *path == layout.path,
            vigil_config::LogTarget::Auto => true,
            _ => false,
        };
        if same && layout.backups_kept == config.backups {
            return Ok(ChannelLog::resume(layout, config.maxbytes, TAIL_RING_BYTES));
        }
    }
    // After a live upgrade an AUTO log keeps the (random) name it had.
    let carried = match &config.logfile {
        vigil_config::LogTarget::Auto => carried_path.map(vigil_config::LogTarget::Path),
        _ => None,
    };
    // A file that cannot be opened fails this program's spawns, not the tree.
    Ok(ChannelLog::for_program(
        carried.as_ref().unwrap_or(&config.logfile),
        &auto,
        config.maxbytes,
        config.backups,
        TAIL_RING_BYTES,
    ))
}

pub(crate) fn log_error(
    process: &ProcessConfig,
    channel: Channel,
    error: logs::LogError,
) -> CoreError {
    CoreError::Failed(format!(
        "{}: cannot open the {} log: {error}",
        process.namespec(),
        channel.as_str()
    ))
}
