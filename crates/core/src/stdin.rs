//! The stdin of a running child: a bounded queue of whole writes that a writer
//! task drains into the pipe as fast as the child reads.
//!
//! `sendProcessStdin` must answer at once even when the child does not read its
//! stdin (supervisord buffers too), and a write must never be left half done in
//! the pipe because a client gave up waiting. So a call only appends its bytes
//! to the queue and returns; the writer owns the pipe. The queue holds at most
//! [`STDIN_QUEUE_LIMIT`] bytes per process, counted from the moment a call is
//! accepted until its last byte is in the pipe: a call that would go beyond it
//! is refused whole, so what a client sees accepted is always written whole and
//! in order, and a child that never reads costs the daemon at most that much.
//!
//! Dropping the queue (the child exited or a new one replaced it) stops the
//! writer and frees whatever was still queued: the pipe's reader is gone, or is
//! a leftover grandchild nobody asked to feed.
//!
//! Most children are never sent a byte, so the channel and the writer task
//! are made at the first write: until then the queue holds only the pipe's
//! descriptor, not even registered with the runtime's reactor.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::AsyncWriteExt as _;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

/// The most bytes queued for one child's stdin and not yet taken by the pipe.
pub const STDIN_QUEUE_LIMIT: usize = 1024 * 1024;

/// Why a write was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue would exceed [`STDIN_QUEUE_LIMIT`]; nothing was queued.
    Full { queued: usize },
    /// The child closed its stdin (an earlier write failed).
    Closed,
}

/// One accepted write; `done` hears when it is in the pipe (or why not).
struct Chunk {
    data: Vec<u8>,
    done: Option<oneshot::Sender<io::Result<()>>>,
}

#[derive(Default)]
struct Level {
    /// Bytes accepted and not yet wholly written.
    queued: usize,
    /// A write failed: the child's stdin is closed for good.
    closed: bool,
}

/// A child's stdin: see the module docs.
pub(crate) struct StdinQueue {
    level: Arc<Mutex<Level>>,
    writer: Mutex<Writer>,
}

/// The pipe until the first write, then the channel to the task that owns it.
enum Writer {
    Idle(Option<OwnedFd>),
    Started {
        chunks: mpsc::UnboundedSender<Chunk>,
        task: tokio::task::JoinHandle<()>,
        /// The pipe's descriptor, open while `level.closed` is false (the
        /// task sets that before it drops the pipe), for a live upgrade.
        fd: std::os::fd::RawFd,
    },
}

impl StdinQueue {
    /// Takes over `pipe`, a non-blocking write end; its writer starts with
    /// the first write (which must come from inside a tokio runtime). Out of
    /// the reactor until then: a registration is a few hundred bytes and two
    /// system calls per child, and most children are never written to.
    pub(crate) fn new(pipe: OwnedFd) -> StdinQueue {
        StdinQueue {
            level: Arc::new(Mutex::new(Level::default())),
            writer: Mutex::new(Writer::Idle(Some(pipe))),
        }
    }

    /// The pipe for a live upgrade (close-on-exec, like every descriptor
    /// until the handover clears the flag): taken when it was never written
    /// to, a copy otherwise; `None` once the child's stdin is closed. Bytes
    /// still queued are not carried.
    pub(crate) fn take_for_handover(&self) -> Option<io::Result<OwnedFd>> {
        let level = self.level.lock().unwrap_or_else(PoisonError::into_inner);
        if level.closed {
            return None;
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *writer {
            Writer::Idle(fd) => fd.take().map(Ok),
            Writer::Started { fd, .. } => {
                // SAFETY: the task drops the pipe only after setting `closed`,
                // which it cannot do while `level` is locked, so `fd` is open.
                let pipe = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
                Some(pipe.try_clone_to_owned())
            }
        }
    }

    /// Bytes accepted and not yet wholly in the pipe.
    pub(crate) fn queued(&self) -> usize {
        self.level.lock().unwrap_or_else(PoisonError::into_inner).queued
    }

    /// Queues `data` whole and returns at once, or refuses it whole.
    pub(crate) fn push(&self, data: Vec<u8>) -> Result<(), Refused> {
        self.enqueue(Chunk { data, done: None })
    }

    /// Queues `data` and waits until it is in the pipe: for writers that must
    /// know it arrived (the event listener protocol).
    pub(crate) async fn write(&self, data: Vec<u8>) -> io::Result<()> {
        let (done, heard) = oneshot::channel();
        match self.enqueue(Chunk { data, done: Some(done) }) {
            Ok(()) => heard.await.unwrap_or_else(|_| Err(io::ErrorKind::BrokenPipe.into())),
            Err(Refused::Closed) => Err(io::ErrorKind::BrokenPipe.into()),
            Err(Refused::Full { .. }) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn enqueue(&self, chunk: Chunk) -> Result<(), Refused> {
        let mut level = self.level.lock().unwrap_or_else(PoisonError::into_inner);
        if level.closed {
            return Err(Refused::Closed);
        }
        let len = chunk.data.len();
        if len > STDIN_QUEUE_LIMIT.saturating_sub(level.queued) {
            return Err(Refused::Full { queued: level.queued });
        }
        // Counted under the lock before the writer can see the chunk, so the
        // writer's subtraction never runs ahead of this addition.
        level.queued += len;
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Writer::Idle(fd) = &mut *writer
            && let Some(pipe) = fd.take().and_then(|fd| pipe::Sender::from_owned_fd(fd).ok())
        {
            let (chunks, rx) = mpsc::unbounded_channel();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&pipe);
            let task = tokio::spawn(drain(pipe, rx, Arc::clone(&self.level)));
            *writer = Writer::Started { chunks, task, fd };
        }
        let sent = match &*writer {
            Writer::Started { chunks, .. } => chunks.send(chunk).is_ok(),
            Writer::Idle(_) => false,
        };
        if !sent {
            level.queued -= len;
            level.closed = true;
            return Err(Refused::Closed);
        }
        Ok(())
    }
}

impl Drop for StdinQueue {
    fn drop(&mut self) {
        // The writer may be parked on a full pipe that nobody will read again.
        if let Writer::Started { task, .. } =
            &*self.writer.lock().unwrap_or_else(PoisonError::into_inner)
        {
            task.abort();
        }
    }
}

/// The writer: each chunk whole, in order, until the pipe fails.
async fn drain(
    mut pipe: pipe::Sender,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    level: Arc<Mutex<Level>>,
) {
    while let Some(chunk) = rx.recv().await {
        let written = pipe.write_all(&chunk.data).await;
        let failed = written.is_err();
        {
            let mut level = level.lock().unwrap_or_else(PoisonError::into_inner);
            level.queued -= chunk.data.len();
            level.closed |= failed;
        }
        if let Some(done) = chunk.done {
            let _ = done.send(written);
        }
        if failed {
            break;
        }
    }
    // Closed: whatever is still queued can never be written.
    rx.close();
    while let Ok(chunk) = rx.try_recv() {
        level.lock().unwrap_or_else(PoisonError::into_inner).queued -= chunk.data.len();
        if let Some(done) = chunk.done {
            let _ = done.send(Err(io::ErrorKind::BrokenPipe.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> (StdinQueue, pipe::Receiver) {
        let (tx, rx) = pipe::pipe().expect("pipe");
        (StdinQueue::new(tx.into_nonblocking_fd().expect("the pipe's descriptor")), rx)
    }

    #[tokio::test]
    async fn a_reader_that_never_reads_gets_whole_writes_up_to_the_limit() {
        let (stdin, mut reader) = queue();
        let chunk = 64 * 1024;
        let mut accepted = 0;
        let mut refused = 0;
        for round in 0..40u8 {
            match stdin.push(vec![round; chunk]) {
                Ok(()) => {
                    assert_eq!(refused, 0, "nothing is accepted after a refusal while full");
                    accepted += 1;
                }
                Err(Refused::Full { queued }) => {
                    assert!(queued + chunk > STDIN_QUEUE_LIMIT);
                    refused += 1;
                }
                Err(Refused::Closed) => panic!("the pipe is open"),
            }
            // Lets the writer fill the pipe, as it would between two calls.
            tokio::task::yield_now().await;
        }
        assert!(accepted >= STDIN_QUEUE_LIMIT / chunk, "{accepted} accepted");
        assert!(refused > 0);
        let mut got = Vec::new();
        let want = accepted * chunk;
        let mut buffer = vec![0u8; 65536];
        while got.len() < want {
            use tokio::io::AsyncReadExt as _;
            let n = reader.read(&mut buffer).await.expect("read");
            got.extend_from_slice(&buffer[..n]);
        }
        for (index, block) in got.chunks(chunk).enumerate() {
            assert!(block.iter().all(|b| usize::from(*b) == index), "chunk {index} whole");
        }
    }

    #[tokio::test]
    async fn the_writer_starts_with_the_first_write() {
        use tokio::io::AsyncReadExt as _;
        let (stdin, mut reader) = queue();
        let idle = |stdin: &StdinQueue| {
            matches!(*stdin.writer.lock().expect("lock"), Writer::Idle(Some(_)))
        };
        assert!(idle(&stdin), "no channel and no task before a write");
        stdin.write(b"hello".to_vec()).await.expect("written");
        assert!(!idle(&stdin));
        let mut got = [0u8; 5];
        reader.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
    }

    #[tokio::test]
    async fn oversized_write_is_refused_and_a_closed_pipe_says_so() {
        let (stdin, reader) = queue();
        assert_eq!(stdin.push(vec![0; STDIN_QUEUE_LIMIT + 1]), Err(Refused::Full { queued: 0 }));
        drop(reader);
        assert!(stdin.write(b"x".to_vec()).await.is_err());
        assert_eq!(stdin.push(b"y".to_vec()), Err(Refused::Closed));
    }
}
