//! The old image's teardown, off a live upgrade's pause.
//!
//! `execve` frees the image it replaces before the new one runs: its memory
//! (about 90 MB with 5,000 programs) and the descriptors only it used, such
//! as the children's pidfds and its clients. That took 15 - 20 ms of the
//! pause. A process sharing the memory (`CLONE_VM`) and holding a copy of
//! the descriptor table leaves `execve` only references to drop: the kernel
//! frees both when the last holder exits, and that is the helper started
//! here, on another core, while the new image reads its state.
//!
//! The helper waits for the end of a pipe that is close-on-exec in vigild,
//! so `execve` itself wakes it. It is a "clone" child (it sends no signal
//! when it exits): the reaper's wait for any child, which takes only
//! children that do, never sees it, and the new image reaps it by the pid
//! the state names ([`reap`]), or names it to the next image if it executes
//! one first ([`pending`]).
//!
//! It keeps its copy of every descriptor the old image had, and uses none:
//! what `execve` closes is then released by the helper too, among it the
//! runtime's epoll instances with thousands of descriptors registered
//! (closing its copies at once instead left that to `execve`: 4.5 - 17 ms
//! from `execve` to the new image's first instruction with 5,000 programs,
//! against 2.1 - 2.6). Until the helper exits (on an idle core, a few
//! milliseconds after `execve`) a file the new image closes stays open
//! there: a program's stdin reaches its end then. One helper at a time:
//! a second, started while the first waits, would hold the first's pipe,
//! and the first the second's, and neither would wake.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// The helper's stack: it makes four system calls.
const STACK: usize = 16 * 1024;

/// A helper holding the running image's memory and descriptors, until this
/// image executes another or drops it.
pub struct Teardown {
    pid: Pid,
    /// Close-on-exec here; the helper exits when it closes.
    wake: Option<OwnedFd>,
    // In memory the helper shares, so freed only once it is reaped.
    _stack: Box<[u8]>,
    _ends: Box<Ends>,
}

/// The pipe's ends as the helper's copy of the table numbers them.
struct Ends {
    read: RawFd,
    write: RawFd,
}

/// Runs in the helper, on its own stack but with the thread-local storage
/// of the thread that cloned it: hence raw system calls that do not fail
/// here (on its own descriptors, every signal blocked), so that `errno`, a
/// thread-local of that thread, is not written.
extern "C" fn helper(ends: *mut c_void) -> c_int {
    // SAFETY: `ends` is the `Ends` that `Teardown` keeps alive until this
    // process is reaped (or this image is gone, and this process with it).
    let ends = unsafe { &*ends.cast::<Ends>() };
    let mut byte = 0u8;
    let lowest = libc::sched_param { sched_priority: 0 };
    // SAFETY: system calls on descriptors of this process's own table, and
    // on its own scheduling (lowering it cannot be refused).
    unsafe {
        // The new image comes first: freeing the old one is work for a
        // core nothing else wants.
        libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_IDLE, &raw const lowest);
        libc::syscall(libc::SYS_close, ends.write);
        while libc::syscall(libc::SYS_read, ends.read, (&raw mut byte).cast::<c_void>(), 1usize) > 0
        {
        }
    }
    // glibc's clone ends the process with this status.
    0
}

impl Teardown {
    /// Starts the helper.
    pub fn start() -> io::Result<Teardown> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let ends = Box::new(Ends { read: read.as_raw_fd(), write: write.as_raw_fd() });
        let mut stack = vec![0u8; STACK].into_boxed_slice();
        // The top, aligned as every ABI Linux runs on asks.
        let top = stack.as_mut_ptr().wrapping_add(STACK);
        let top = top.wrapping_sub(top as usize % 16);
        // The helper starts with the caller's signal mask: all blocked, so a
        // signal to vigild's process group does not run a handler there.
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old))?;
        // SAFETY: `helper` touches only `ends` and its own stack, both kept
        // alive by the `Teardown` until the helper is reaped; no exit signal,
        // so only a wait with `__WALL` takes it.
        let pid = unsafe {
            libc::clone(
                helper,
                top.cast::<c_void>(),
                libc::CLONE_VM,
                (&raw const *ends).cast_mut().cast::<c_void>(),
            )
        };
        let cloned = io::Error::last_os_error();
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
        if pid == -1 {
            return Err(cloned);
        }
        // The helper has its own copy of the table: ours of the read end
        // goes now, its of the write end in `helper`.
        drop(read);
        Ok(Teardown { pid: Pid::from_raw(pid), wake: Some(write), _stack: stack, _ends: ends })
    }

    /// The helper's pid, for the next image to reap.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }
}

impl Drop for Teardown {
    /// No `execve` after all: the helper is woken and reaped here.
    fn drop(&mut self) {
        drop(self.wake.take());
        wait(self.pid);
    }
}

/// Helpers of earlier images not reaped yet, for the next image to reap if
/// this one executes it first.
static UNREAPED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Reaps the helpers the state names (the last image's, and any that image
/// had not reaped yet), on a thread: each exits once it has freed its
/// image, a few milliseconds from now.
pub fn reap(pids: Vec<u32>) {
    if pids.is_empty() {
        return;
    }
    unreaped().extend(&pids);
    let spawned = std::thread::Builder::new().name("vigil-teardown".to_owned()).spawn(move || {
        for pid in pids {
            if let Ok(raw) = i32::try_from(pid) {
                wait(Pid::from_raw(raw));
            }
            unreaped().retain(|&left| left != pid);
        }
    });
    if let Err(err) = spawned {
        tracing::warn!("cannot wait for the previous images' teardown: {err}");
    }
}

/// The helpers [`reap`] has not reaped yet: an image that executes the
/// next one before they exit names them in the state.
pub fn pending() -> Vec<u32> {
    unreaped().clone()
}

fn unreaped() -> std::sync::MutexGuard<'static, Vec<u32>> {
    UNREAPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wait(pid: Pid) {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => continue,
            // ECHILD: reaped already, by an image before a refused upgrade
            // executed this one again.
            Ok(_) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One helper at a time (see the module's notes): each test holds this.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn alone() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `kcmp(2)`: whether two processes share a kernel resource.
    fn same(pid: Pid, what: libc::c_long) -> bool {
        let us = libc::c_long::from(std::process::id() as i32);
        // SAFETY: a comparison; no memory is passed.
        let got = unsafe {
            libc::syscall(libc::SYS_kcmp, us, libc::c_long::from(pid.as_raw()), what, 0, 0)
        };
        assert!(got >= 0, "kcmp: {}", io::Error::last_os_error());
        got == 0
    }

    #[test]
    fn the_helper_shares_the_memory_not_the_table_and_waits_unseen() {
        const KCMP_VM: libc::c_long = 1;
        const KCMP_FILES: libc::c_long = 2;
        let _alone = alone();
        let teardown = Teardown::start().expect("clone");
        let pid = teardown.pid;
        assert!(same(pid, KCMP_VM), "the helper holds this image's memory");
        assert!(!same(pid, KCMP_FILES), "and a copy of the descriptors, not the table itself");
        // A wait without `__WALL`, as every one of the reaper's, does not
        // see it, even by its pid.
        assert_eq!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Err(nix::errno::Errno::ECHILD));
        // It gives way to everything else (SCHED_IDLE, the 41st field of
        // its stat), once it has run its first instructions.
        let policy = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = stat.rsplit_once(')')?.1;
            after_name.split_whitespace().nth(38)?.parse::<i32>().ok()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while policy() != Some(libc::SCHED_IDLE) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(policy(), Some(libc::SCHED_IDLE));
        drop(teardown);
        // Woken and reaped by the drop.
        assert_eq!(waitpid(pid, Some(WaitPidFlag::__WALL)), Err(nix::errno::Errno::ECHILD));
    }

    #[test]
    fn a_helper_left_to_reap_is_pending_until_it_is_reaped() {
        let _alone = alone();
        let mut teardown = Teardown::start().expect("clone");
        let (pid, wake) = (teardown.pid, teardown.wake.take());
        // As if this image had executed the next: the helper outlives the
        // `Teardown` (and keeps the memory it uses), and is reaped by pid.
        std::mem::forget(teardown);
        let raw = pid.as_raw().unsigned_abs();
        reap(vec![raw]);
        assert!(pending().contains(&raw), "named to the next image until reaped");
        drop(wake);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pending().contains(&raw) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!pending().contains(&raw));
        assert_eq!(waitpid(pid, Some(WaitPidFlag::__WALL)), Err(nix::errno::Errno::ECHILD));
    }
}
