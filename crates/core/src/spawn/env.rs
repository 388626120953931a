//! A child's environment, built so that a spawn copies only what it sets.
//!
//! Every child inherits the daemon's environment (dozens of variables) under
//! the few that supervisord sets per program. Copied per spawn, the inherited
//! part was a string pair, a map node and a C string per variable, each
//! allocated and freed again on a restart's path. Here it is sorted and
//! encoded as `NAME=value` once ([`InheritedEnv`]) and shared by reference
//! count; a [`ChildEnv`] adds the variables set for one child, and the launch
//! points `envp` at both without copying the inherited strings.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::sync::Arc;

/// The daemon's environment as children inherit it: sorted by name, a later
/// duplicate winning, and encoded once.
#[derive(Default, PartialEq, Eq)]
pub struct InheritedEnv {
    vars: Vec<(String, String)>,
    /// `vars` as `NAME=value`; `None` for a pair no `execve` can take (a NUL
    /// byte, or a name that is empty or holds `=`): the spawn that would pass
    /// it fails, as one whose own variable is such fails.
    encoded: Vec<Option<CString>>,
}

impl InheritedEnv {
    /// The environment `vars` make, the last of two with the same name winning.
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> InheritedEnv {
        let vars: Vec<(String, String)> =
            vars.into_iter().collect::<BTreeMap<_, _>>().into_iter().collect();
        let encoded = vars.iter().map(|(name, value)| encode(name, value)).collect();
        InheritedEnv { vars, encoded }
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        let index = self.vars.binary_search_by(|(key, _)| key.as_str().cmp(name)).ok()?;
        Some(&self.vars[index].1)
    }
}

impl fmt::Debug for InheritedEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.vars.iter().map(|(k, v)| (k, v))).finish()
    }
}

/// The complete environment of one child: what it inherits, under what is set
/// for it. Cloning it shares the inherited part.
#[derive(Clone, Default)]
pub struct ChildEnv {
    inherited: Arc<InheritedEnv>,
    /// Sorted by name, each name once; over `inherited`.
    set: Vec<(String, String)>,
}

impl ChildEnv {
    /// `inherited` under `set`.
    pub fn new(inherited: Arc<InheritedEnv>, set: BTreeMap<String, String>) -> ChildEnv {
        ChildEnv { inherited, set: set.into_iter().collect() }
    }

    /// Sets `name` for this child, over anything inherited or set before.
    pub fn set(&mut self, name: String, value: String) {
        match self.set.binary_search_by(|(key, _)| key.as_str().cmp(&name)) {
            Ok(index) => self.set[index].1 = value,
            Err(index) => self.set.insert(index, (name, value)),
        }
    }

    /// The value of `name`, if the child gets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.set.binary_search_by(|(key, _)| key.as_str().cmp(name)) {
            Ok(index) => Some(&self.set[index].1),
            Err(_) => self.inherited.get(name),
        }
    }

    /// Every variable the child gets, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.merged().map(|entry| match entry {
            Entry::Inherited(index) => {
                let (name, value) = &self.inherited.vars[index];
                (name.as_str(), value.as_str())
            }
            Entry::Set(index) => {
                let (name, value) = &self.set[index];
                (name.as_str(), value.as_str())
            }
        })
    }

    /// The entries in `execve`'s form: the inherited ones by pointer, the set
    /// ones encoded here. `Err` names the first variable no child can take.
    pub(crate) fn encode(&self) -> Result<EncodedEnv, String> {
        let mut own = Vec::with_capacity(self.set.len());
        for (name, value) in &self.set {
            own.push(encode(name, value).ok_or_else(|| name.clone())?);
        }
        let mut envp = Vec::with_capacity(self.inherited.vars.len() + own.len() + 1);
        for entry in self.merged() {
            envp.push(match entry {
                Entry::Inherited(index) => match &self.inherited.encoded[index] {
                    Some(encoded) => encoded.as_ptr(),
                    None => return Err(self.inherited.vars[index].0.clone()),
                },
                Entry::Set(index) => own[index].as_ptr(),
            });
        }
        envp.push(std::ptr::null());
        Ok(EncodedEnv { _inherited: Arc::clone(&self.inherited), _own: own, envp })
    }

    /// The two sorted lists merged by name, the set entry hiding an inherited
    /// one of the same name.
    fn merged(&self) -> impl Iterator<Item = Entry> + '_ {
        let inherited = &self.inherited.vars;
        let (mut i, mut s) = (0, 0);
        std::iter::from_fn(move || {
            let entry = match (inherited.get(i), self.set.get(s)) {
                (None, None) => return None,
                (Some(_), None) => Entry::Inherited(i),
                (None, Some(_)) => Entry::Set(s),
                (Some((a, _)), Some((b, _))) => match a.cmp(b) {
                    std::cmp::Ordering::Less => Entry::Inherited(i),
                    std::cmp::Ordering::Greater => Entry::Set(s),
                    std::cmp::Ordering::Equal => {
                        i += 1;
                        Entry::Set(s)
                    }
                },
            };
            match entry {
                Entry::Inherited(_) => i += 1,
                Entry::Set(_) => s += 1,
            }
            Some(entry)
        })
    }
}

/// Where one entry of the merged environment comes from.
enum Entry {
    Inherited(usize),
    Set(usize),
}

impl PartialEq for ChildEnv {
    fn eq(&self, other: &ChildEnv) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ChildEnv {}

impl fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// An environment of only `vars` (the last of two with the same name wins).
impl FromIterator<(String, String)> for ChildEnv {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(vars: I) -> ChildEnv {
        ChildEnv::new(Arc::default(), vars.into_iter().collect())
    }
}

/// A [`ChildEnv`] as `execve` takes it: a NULL-terminated array of pointers
/// into strings this value keeps alive.
pub(crate) struct EncodedEnv {
    _inherited: Arc<InheritedEnv>,
    _own: Vec<CString>,
    envp: Vec<*const libc::c_char>,
}

impl EncodedEnv {
    /// The NULL-terminated `envp`, valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *const *const libc::c_char {
        self.envp.as_ptr()
    }
}

/// `NAME=value`, or `None` where `execve` could not pass the pair intact.
fn encode(name: &str, value: &str) -> Option<CString> {
    if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
        return None;
    }
    let mut entry = Vec::with_capacity(name.len() + value.len() + 1);
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    CString::new(entry).ok()
}
