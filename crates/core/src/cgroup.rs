//! Control groups: a process's own group in every hierarchy its limits need,
//! the limits written there, the record of every process it started (for
//! `stopasgroup`/`killasgroup`) and the OOM killer's count.
//!
//! # Where the groups are
//!
//! [`Host::detect`] reads which hierarchies are mounted (`/proc/self/mountinfo`)
//! and where vigild sits in each (`/proc/self/cgroup`): the unified (v2)
//! hierarchy, and any v1 hierarchies (`memory`, `cpu`, `pids`, ...). A process
//! with a control group gets `<base>/vigil/<namespec>` in each hierarchy it
//! uses, `<base>` being `[supervisord] cgroup_root` or else vigild's own group.
//! A limit's controller is taken from v2 when the unified hierarchy offers it
//! there, else from a v1 hierarchy that has it (hosts that mount the unified
//! hierarchy without controllers beside v1 ones, as systemd's hybrid mode
//! does). When the unified hierarchy is mounted and writable the process is
//! placed there too, whatever its limits, because v2 has `cgroup.kill`.
//!
//! On v2 a group with processes cannot pass controllers to its children, so
//! when the controllers must be enabled in vigild's own group (vigild under a
//! systemd unit with `Delegate=yes`, or PID 1 of a container), vigild first
//! moves itself into the leaf `<own>/vigild`. It does that when the tree is
//! built (`Cgroups::prepare`), before it has children that would stay
//! behind in its old group.
//!
//! # Placement before exec
//!
//! The spawned child writes `0` (itself) to each group's `cgroup.procs` before
//! it changes user or execs (`launch.rs`), so nothing it runs ever runs outside
//! its group and its limits, and the reaper's rule (no exit reaped before its
//! pid is registered) is untouched. A child that cannot join fails its spawn:
//! a program with a limit never runs without it.
//!
//! # Lifetime
//!
//! The group is made at the process's first spawn and kept across its restarts
//! (its limits are rewritten before each spawn). It is removed when its
//! `ProcessCgroup` is dropped: the process actor stopped, because `update`
//! removed the program or the daemon is exiting. Processes still inside are
//! killed first, since the directory cannot go while they live. `update`
//! replacing a process starts the new actor before the old one is gone, and
//! both name the same directories: `Cgroups` counts the owners of each
//! directory, and only the last one removes it.

mod watch;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use vigil_config::{CgroupLimits, Config, GroupKind, UserSpec};

pub(crate) use watch::spawn_memory_watch;

/// The name of the directory made under the base in every hierarchy.
const VIGIL_DIR: &str = "vigil";
/// The leaf vigild moves itself into on v2 when its own group must pass
/// controllers down.
const DAEMON_LEAF: &str = "vigild";
/// The period `cpu_quota` is measured over, in microseconds (the kernel's
/// default period).
const CPU_PERIOD_US: u64 = 100_000;

/// cgroup v1 or v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// One hierarchy per controller set.
    V1,
    /// The unified hierarchy.
    V2,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    version: Version,
    /// v1: the mount's options, among them the controllers bound to it.
    options: Vec<String>,
    mount: PathBuf,
    /// The part of the hierarchy the mount shows (`/` unless bind-mounted).
    mount_root: String,
    /// vigild's own group, as a path in the hierarchy.
    own: String,
}

impl Hierarchy {
    /// The directory of group `path`; `None` when the mount does not show it.
    fn dir(&self, path: &str) -> Option<PathBuf> {
        let rest = if self.mount_root == "/" {
            path
        } else {
            let rest = path.strip_prefix(self.mount_root.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        Some(self.mount.join(rest.trim_start_matches('/')))
    }

    fn has(&self, controller: &str) -> bool {
        self.options.iter().any(|option| option == controller)
    }
}

/// The control-group hierarchies of this host, as vigild sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    unified: Option<Hierarchy>,
    v1: Vec<Hierarchy>,
}

impl Host {
    /// Reads the mounts and vigild's own groups; a host without them has none.
    pub fn detect() -> Host {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Host::parse(&mountinfo, &own)
    }

    /// [`Host::detect`] on given contents of `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`.
    fn parse(mountinfo: &str, own: &str) -> Host {
        // hierarchy id -> (controllers, path)
        let memberships: Vec<(Vec<&str>, &str)> = own
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let _id = parts.next()?;
                let controllers = parts.next()?;
                let path = parts.next()?;
                Some((controllers.split(',').filter(|c| !c.is_empty()).collect(), path))
            })
            .collect();
        let mut host = Host::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mount), Some(fstype)) = (left.get(3), left.get(4), right.first())
            else {
                continue;
            };
            let mount = PathBuf::from(unescape(mount));
            let mount_root = unescape(root);
            match *fstype {
                "cgroup2" if host.unified.is_none() => {
                    let Some((_, path)) = memberships.iter().find(|(c, _)| c.is_empty()) else {
                        continue;
                    };
                    host.unified = Some(Hierarchy {
                        version: Version::V2,
                        options: Vec::new(),
                        mount,
                        mount_root,
                        own: (*path).to_owned(),
                    });
                }
                "cgroup" => {
                    let options: Vec<String> = right
                        .get(2)
                        .map(|o| o.split(',').map(str::to_owned).collect())
                        .unwrap_or_default();
                    let Some((_, path)) = memberships.iter().find(|(controllers, _)| {
                        !controllers.is_empty()
                            && controllers.iter().all(|c| options.iter().any(|o| o == c))
                    }) else {
                        continue;
                    };
                    if host.v1.iter().any(|h| h.options == options) {
                        continue;
                    }
                    host.v1.push(Hierarchy {
                        version: Version::V1,
                        options,
                        mount,
                        mount_root,
                        own: (*path).to_owned(),
                    });
                }
                _ => {}
            }
        }
        host
    }
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = field.get(i + 1..i + 4)
            && let Ok(byte) = u8::from_str_radix(octal, 8)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a process cannot have the control group its config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key that needs it (`memory_max`, `cgroup`).
    pub key: &'static str,
    /// What is missing, one line.
    pub message: String,
}

/// The controllers a process's limits need, each with the key asking for it.
fn needs(limits: &CgroupLimits) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if limits.memory_max.is_some() {
        out.push(("memory", "memory_max"));
    } else if limits.memory_restart_threshold.is_some() {
        out.push(("memory", "memory_restart_threshold"));
    }
    if limits.cpu_quota.is_some() {
        out.push(("cpu", "cpu_quota"));
    }
    if limits.pids_max.is_some() {
        out.push(("pids", "pids_max"));
    }
    out
}

/// One hierarchy a process's group goes in, and the controllers used there.
#[derive(Debug, Clone)]
struct Placement {
    hierarchy: Hierarchy,
    controllers: Vec<&'static str>,
    /// The key that asks for this placement, for messages.
    key: &'static str,
}

/// The daemon's control groups: the host's hierarchies and where programs'
/// groups go. One per tree.
#[derive(Debug)]
pub(crate) struct Cgroups {
    host: Host,
    /// `[supervisord] cgroup_root`.
    root: Option<String>,
    /// Serializes making the shared directories (and vigild's own move on
    /// v2), and counts the live owners of each process directory.
    owners: Arc<Mutex<HashMap<PathBuf, usize>>>,
}

impl Cgroups {
    pub(crate) fn new(host: Host, root: Option<String>) -> Cgroups {
        Cgroups { host, root, owners: Arc::default() }
    }

    /// The base directory in `hierarchy`.
    fn base(&self, hierarchy: &Hierarchy) -> Result<PathBuf, String> {
        let path = self.root.as_deref().unwrap_or(&hierarchy.own);
        hierarchy.dir(path).ok_or_else(|| {
            format!(
                "control group {path} is outside what the hierarchy mounted at {} shows",
                hierarchy.mount.display()
            )
        })
    }

    /// Whether the unified hierarchy can give `controller` below the base.
    fn v2_offers(&self, unified: &Hierarchy, controller: &str) -> bool {
        let Ok(base) = self.base(unified) else { return false };
        let dir = nearest_existing(&base);
        let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        offered.split_whitespace().any(|c| c == controller)
    }

    /// The hierarchies a process with `limits` is placed in.
    fn plan(&self, limits: &CgroupLimits) -> Result<Vec<Placement>, Refusal> {
        let mut out: Vec<Placement> = Vec::new();
        let add =
            |out: &mut Vec<Placement>,
             hierarchy: &Hierarchy,
             controller: Option<&'static str>,
             key: &'static str| match out.iter_mut().find(|p| p.hierarchy == *hierarchy)
            {
                Some(placement) => placement.controllers.extend(controller),
                None => out.push(Placement {
                    hierarchy: hierarchy.clone(),
                    controllers: controller.into_iter().collect(),
                    key,
                }),
            };
        for (controller, key) in needs(limits) {
            if let Some(unified) =
                self.host.unified.as_ref().filter(|u| self.v2_offers(u, controller))
            {
                add(&mut out, unified, Some(controller), key);
            } else if let Some(v1) = self.host.v1.iter().find(|h| h.has(controller)) {
                add(&mut out, v1, Some(controller), key);
            } else {
                return Err(Refusal {
                    key,
                    message: format!(
                        "this host offers no {controller} controller (not in cgroup v2 below vigild's group, no v1 hierarchy)"
                    ),
                });
            }
        }
        let tracked_by_v2 = out.iter().any(|p| p.hierarchy.version == Version::V2);
        if !tracked_by_v2 {
            let unified = self.host.unified.as_ref().filter(|u| {
                self.base(u).is_ok_and(|base| writable(&nearest_existing(&base.join(VIGIL_DIR))))
            });
            if let Some(unified) = unified {
                add(&mut out, unified, None, "cgroup");
            } else if out.is_empty() {
                let v1 = ["pids", "memory", "cpu"]
                    .iter()
                    .find_map(|c| self.host.v1.iter().find(|h| h.has(c)));
                match v1 {
                    Some(v1) => add(&mut out, v1, None, "cgroup"),
                    None => {
                        return Err(Refusal {
                            key: "cgroup",
                            message: "no control group hierarchy is mounted that vigild can use"
                                .to_owned(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// What keeps a process with `limits` from getting its group here, checked
    /// without changing anything.
    /// `daemon_user`: the user vigild switches to (`[supervisord] user`), when
    /// not the one checking; the groups are made after the switch.
    pub(crate) fn check(
        &self,
        limits: &CgroupLimits,
        daemon_user: Option<&UserSpec>,
    ) -> Result<(), Refusal> {
        for placement in self.plan(limits)? {
            let refuse = |message: String| Refusal { key: placement.key, message };
            let base = self.base(&placement.hierarchy).map_err(refuse)?;
            let existing = nearest_existing(&base.join(VIGIL_DIR));
            let (who, allowed) = match daemon_user {
                Some(user) => {
                    (format!("vigild (as user {})", user.name), writable_by(&existing, user))
                }
                None => ("vigild".to_owned(), writable(&existing)),
            };
            if !allowed {
                return Err(refuse(format!(
                    "{who} cannot make control groups in {}: run it as root, or give it a delegated control group (cgroup_root)",
                    existing.display(),
                )));
            }
        }
        Ok(())
    }

    /// At start-up, before any child exists: passes the v2 controllers the
    /// config's limits need down to `<base>/vigil`, moving vigild into its
    /// leaf first if it must. Done later, at a first spawn, the base could
    /// already hold programs without groups (vigild's children), which v2
    /// would refuse. A failure is logged here and fails those programs'
    /// spawns with the same message.
    pub(crate) fn prepare<'a>(&self, wanted: impl IntoIterator<Item = &'a CgroupLimits>) {
        let mut done: Vec<PathBuf> = Vec::new();
        let _owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        for limits in wanted {
            let Ok(plan) = self.plan(limits) else { continue };
            for placement in plan {
                if placement.hierarchy.version != Version::V2 || placement.controllers.is_empty() {
                    continue;
                }
                let Ok(base) = self.base(&placement.hierarchy) else { continue };
                let parent = base.join(VIGIL_DIR);
                let key = parent.join(placement.controllers.join(","));
                if done.contains(&key) {
                    continue;
                }
                done.push(key);
                if let Err(error) = enable_v2(&placement.hierarchy, &parent, &placement.controllers)
                {
                    tracing::error!("control groups: {error}");
                }
            }
        }
    }

    /// Makes (or adopts, when left empty by an earlier run) the process's
    /// group in every hierarchy it needs.
    pub(crate) fn create(
        &self,
        namespec: &str,
        limits: &CgroupLimits,
    ) -> Result<ProcessCgroup, String> {
        self.make(namespec, limits, None)
    }

    /// After a live upgrade: the group of a process whose child `pid` the
    /// previous image put in it, taken over with the child in it.
    pub(crate) fn adopt(
        &self,
        namespec: &str,
        limits: &CgroupLimits,
        pid: u32,
    ) -> Result<ProcessCgroup, String> {
        self.make(namespec, limits, Some(pid))
    }

    fn make(
        &self,
        namespec: &str,
        limits: &CgroupLimits,
        adopted: Option<u32>,
    ) -> Result<ProcessCgroup, String> {
        let plan = self.plan(limits).map_err(|r| format!("{}: {}", r.key, r.message))?;
        let name = namespec.replace('/', "_");
        let mut cgroup = ProcessCgroup {
            dirs: Vec::new(),
            namespec: namespec.to_owned(),
            owners: Arc::clone(&self.owners),
        };
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        for placement in plan {
            let base = self.base(&placement.hierarchy)?;
            let parent = base.join(VIGIL_DIR);
            if placement.hierarchy.version == Version::V2 && !placement.controllers.is_empty() {
                enable_v2(&placement.hierarchy, &parent, &placement.controllers)?;
            } else {
                fs::create_dir_all(&parent)
                    .map_err(|e| format!("cannot make control group {}: {e}", parent.display()))?;
            }
            let dir = parent.join(&name);
            let owned = owners.get(&dir).is_some_and(|count| *count > 0);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // Ours already (the process being replaced by `update`).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && owned => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let members = members(&dir);
                    if !members.is_empty() && !adopted.is_some_and(|pid| members.contains(&pid)) {
                        return Err(format!(
                            "control group {} already holds processes (another vigild with the same cgroup_root?)",
                            dir.display()
                        ));
                    }
                }
                Err(e) => {
                    return Err(format!("cannot make control group {}: {e}", dir.display()));
                }
            }
            *owners.entry(dir.clone()).or_default() += 1;
            cgroup.dirs.push(Dir {
                path: dir,
                version: placement.hierarchy.version,
                controllers: placement.controllers,
            });
        }
        Ok(cgroup)
    }
}

/// The closest directory at or above `path` that exists.
fn nearest_existing(path: &Path) -> PathBuf {
    let mut dir = path;
    while !dir.is_dir() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => break,
        }
    }
    dir.to_path_buf()
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Whether `user` may make entries in `dir`, by its owner, group and mode
/// (its supplementary groups aside), on a file system mounted writable.
fn writable_by(dir: &Path, user: &UserSpec) -> bool {
    use std::os::unix::fs::MetadataExt;
    let read_only = nix::sys::statvfs::statvfs(dir)
        .is_ok_and(|fs| fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let Ok(meta) = fs::metadata(dir) else { return false };
    let mode = meta.mode();
    !read_only
        && (user.uid == 0
            || (meta.uid() == user.uid && mode & 0o200 != 0)
            || (meta.gid() == user.gid && mode & 0o020 != 0)
            || mode & 0o002 != 0)
}

/// Makes `parent` (`<base>/vigil`) on v2 with `controllers` available to its
/// children: each is enabled in `cgroup.subtree_control` from the closest
/// existing ancestor down.
fn enable_v2(unified: &Hierarchy, parent: &Path, controllers: &[&str]) -> Result<(), String> {
    let top = nearest_existing(parent);
    let mut chain = vec![top.clone()];
    let below: Vec<&Path> = parent.ancestors().take_while(|p| *p != top).collect();
    chain.extend(below.into_iter().rev().map(Path::to_path_buf));
    for (index, level) in chain.iter().enumerate() {
        if index > 0 {
            match fs::create_dir(level) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(format!("cannot make control group {}: {e}", level.display()));
                }
            }
        }
        let control = level.join("cgroup.subtree_control");
        let enabled = fs::read_to_string(&control).unwrap_or_default();
        let missing: Vec<String> = controllers
            .iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let write = || write_file(&control, &missing.join(" "));
        let result = match write() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && is_own(unified, level) => {
                // The group holds vigild itself; v2 passes controllers down
                // only from groups without processes.
                move_daemon(level)?;
                write()
            }
            other => other,
        };
        result.map_err(|e| {
            format!(
                "cannot enable {} below {}: {e} (a v2 group with processes cannot pass controllers on; set cgroup_root to a delegated group without processes)",
                controllers.join(", "),
                level.display()
            )
        })?;
    }
    Ok(())
}

fn is_own(unified: &Hierarchy, dir: &Path) -> bool {
    unified.dir(&unified.own).is_some_and(|own| own == dir)
}

/// Moves vigild into the leaf [`DAEMON_LEAF`] of its own v2 group.
fn move_daemon(own: &Path) -> Result<(), String> {
    let leaf = own.join(DAEMON_LEAF);
    match fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot make control group {}: {e}", leaf.display())),
    }
    write_file(&leaf.join("cgroup.procs"), &std::process::id().to_string())
        .map_err(|e| format!("cannot move vigild into {}: {e}", leaf.display()))?;
    tracing::info!("moved vigild into control group {} to delegate controllers", leaf.display());
    Ok(())
}

/// Writes `value` to a control file in one `write`, as the kernel wants.
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(value.as_bytes())
}

/// The pids in a group (`cgroup.procs`); empty when it cannot be read.
fn members(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// `key N` from a flat-keyed control file (`memory.events`).
fn counter(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// One directory of a process's group.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    version: Version,
    controllers: Vec<&'static str>,
}

/// A process's control group, in every hierarchy it uses; removed when the
/// last owner drops it.
#[derive(Debug)]
pub(crate) struct ProcessCgroup {
    dirs: Vec<Dir>,
    namespec: String,
    /// [`Cgroups`]'s count of owners per directory.
    owners: Arc<Mutex<HashMap<PathBuf, usize>>>,
}

impl ProcessCgroup {
    /// Writes `limits` to the group; a limit the config no longer sets is
    /// lifted, so a kept group follows an updated config.
    pub(crate) fn apply(&self, limits: &CgroupLimits) -> Result<(), String> {
        let or_max = |n: Option<u64>| n.map_or_else(|| "max".to_owned(), |n| n.to_string());
        let or_v1 = |n: Option<u64>| n.map_or_else(|| "-1".to_owned(), |n| n.to_string());
        let quota = limits.cpu_quota.map(|percent| u64::from(percent) * CPU_PERIOD_US / 100);
        for dir in &self.dirs {
            let mut writes: Vec<(&str, String)> = Vec::new();
            for controller in &dir.controllers {
                match (*controller, dir.version) {
                    ("memory", Version::V2) => {
                        writes.push(("memory.max", or_max(limits.memory_max)));
                        writes.push(("memory.high", or_max(limits.memory_restart_threshold)));
                    }
                    ("memory", Version::V1) => {
                        writes.push(("memory.limit_in_bytes", or_v1(limits.memory_max)));
                    }
                    ("cpu", Version::V2) => {
                        let max = quota.map_or_else(|| "max".to_owned(), |q| q.to_string());
                        writes.push(("cpu.max", format!("{max} {CPU_PERIOD_US}")));
                    }
                    ("cpu", Version::V1) => {
                        writes.push(("cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
                        writes.push(("cpu.cfs_quota_us", or_v1(quota)));
                    }
                    ("pids", _) => writes.push(("pids.max", or_max(limits.pids_max))),
                    _ => {}
                }
            }
            for (file, value) in writes {
                let path = dir.path.join(file);
                write_file(&path, &value)
                    .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files the child writes itself into before exec.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|dir| dir.path.join("cgroup.procs")).collect()
    }

    /// The directory holding the memory controller, and its version.
    pub(crate) fn memory_dir(&self) -> Option<(&Path, Version)> {
        self.dirs
            .iter()
            .find(|dir| dir.controllers.contains(&"memory"))
            .map(|dir| (dir.path.as_path(), dir.version))
    }

    /// How many times the kernel's OOM killer acted in the group so far
    /// (v2 `memory.events`, v1 `memory.oom_control`); `None` without the
    /// memory controller or the counter.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let (dir, version) = self.memory_dir()?;
        match version {
            Version::V2 => counter(&dir.join("memory.events"), "oom_kill"),
            Version::V1 => counter(&dir.join("memory.oom_control"), "oom_kill"),
        }
    }

    /// The directory whose `cgroup.procs` lists every process of the group.
    fn tracker(&self) -> Option<&Dir> {
        self.dirs.iter().find(|dir| dir.version == Version::V2).or(self.dirs.first())
    }

    /// The pids in the group now.
    pub(crate) fn members(&self) -> Vec<u32> {
        self.tracker().map(|dir| members(&dir.path)).unwrap_or_default()
    }

    /// Sends `sig` to every process in the group but `except` (the child the
    /// reaper signals itself); returns how many got it. A pid is signalled
    /// through a pidfd taken while it was listed and confirmed in the group
    /// after, so a pid reused by a process outside the group is never hit.
    pub(crate) fn signal(&self, sig: i32, except: Option<u32>) -> usize {
        let Some(tracker) = self.tracker() else { return 0 };
        if sig == libc::SIGKILL && except.is_none() && tracker.version == Version::V2 {
            let kill = tracker.path.join("cgroup.kill");
            if write_file(&kill, "1").is_ok() {
                return members(&tracker.path).len();
            }
        }
        let before = members(&tracker.path);
        let pinned: Vec<(u32, Option<std::os::fd::OwnedFd>)> = before
            .into_iter()
            .filter(|pid| Some(*pid) != except)
            .map(|pid| (pid, pidfd_open(pid)))
            .collect();
        let after = members(&tracker.path);
        let mut sent = 0;
        for (pid, pidfd) in pinned {
            if !after.contains(&pid) {
                continue;
            }
            let delivered = match pidfd {
                Some(fd) => pidfd_send_signal(&fd, sig),
                // No pidfds (Linux < 5.3): the pid was just listed in the group.
                None => nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::try_from(sig).ok(),
                )
                .is_ok(),
            };
            sent += usize::from(delivered);
        }
        sent
    }

    /// Kills what is left in the group, then removes its directories; used on
    /// drop. Waits (briefly, bounded) only when processes had to be killed.
    /// Directories another owner still uses are left to it. Holds the owners'
    /// lock throughout, so a new owner cannot adopt a directory being removed.
    fn remove(&mut self) {
        let owners = Arc::clone(&self.owners);
        let mut owners = owners.lock().unwrap_or_else(PoisonError::into_inner);
        self.dirs.retain(|dir| {
            let count = owners.entry(dir.path.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count > 0 {
                return false;
            }
            owners.remove(&dir.path);
            true
        });
        if self.dirs.is_empty() {
            return;
        }
        let left = self.members();
        if !left.is_empty() {
            tracing::warn!(
                "killing {} process(es) left in the control group of '{}'",
                left.len(),
                self.namespec
            );
            self.signal(libc::SIGKILL, None);
        }
        for dir in self.dirs.drain(..) {
            let mut rounds = 0;
            loop {
                match fs::remove_dir(&dir.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && rounds < KILL_ROUNDS => {
                        // Killed processes leave the group as the kernel
                        // finishes their exit; a fork that raced the kill is
                        // in the next round.
                        rounds += 1;
                        kill_members_and_wait(&dir.path);
                    }
                    Err(e) => {
                        tracing::warn!("cannot remove control group {}: {e}", dir.path.display());
                        break;
                    }
                }
            }
            // The shared `vigil` directory goes with the last process's group.
            if let Some(parent) = dir.path.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

impl Drop for ProcessCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Rounds of killing what a group holds before its removal gives up.
const KILL_ROUNDS: u32 = 20;
/// How long one round waits for the killed processes to end.
const KILL_WAIT_MS: u16 = 500;

/// SIGKILLs whatever `dir` lists and waits (bounded) until those processes
/// have exited: a pidfd becomes readable when its process ends, so this
/// sleeps on the kernel's word rather than a timer.
fn kill_members_and_wait(dir: &Path) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let pinned: Vec<(u32, std::os::fd::OwnedFd)> =
        members(dir).into_iter().filter_map(|pid| Some((pid, pidfd_open(pid)?))).collect();
    let listed = members(dir);
    let killed: Vec<std::os::fd::OwnedFd> = pinned
        .into_iter()
        .filter(|(pid, _)| listed.contains(pid))
        .filter_map(|(_, fd)| pidfd_send_signal(&fd, libc::SIGKILL).then_some(fd))
        .collect();
    for fd in &killed {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(KILL_WAIT_MS));
    }
}

fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: a descriptor just returned to us, owned by nothing else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn pidfd_send_signal(fd: &std::os::fd::OwnedFd, sig: i32) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal(2) on a pidfd we hold, without siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

/// Every process whose config asks for a control group this host and this
/// daemon cannot give, with the key concerned: `vigild --check` reports them
/// and start-up refuses the config, so a limit never silently goes missing.
pub fn check(config: &Config) -> Vec<(String, Refusal)> {
    let wanted: Vec<_> = config.processes().filter(|p| p.cgroup.is_some()).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let cgroups = Cgroups::new(Host::detect(), config.supervisord.cgroup_root.clone());
    let daemon_user =
        config.supervisord.user.as_ref().filter(|user| user.uid != nix::unistd::getuid().as_raw());
    let mut out: Vec<(String, Refusal)> = Vec::new();
    for group in &config.groups {
        let kind = match group.kind {
            GroupKind::Fcgi(_) => "fcgi-program",
            GroupKind::EventListener(_) => "eventlistener",
            GroupKind::Program | GroupKind::Heterogeneous => "program",
        };
        for process in &group.processes {
            let Some(limits) = &process.cgroup else { continue };
            let section = format!("{kind}:{}", process.program);
            if out.iter().any(|(s, _)| *s == section) {
                continue;
            }
            if let Err(refusal) = cgroups.check(limits, daemon_user) {
                out.push((section, refusal));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
