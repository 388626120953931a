//! `[group:x]` sections and the assembly of the final groups: a group's members
//! come from the programs it lists, every other program is a group of its own,
//! and a group's processes are ordered by priority then name.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::reader::{Reader, section_place};
use super::{Program, here_str, with};
use crate::error::{Diagnostics, Locate, Place};
use crate::expand::{Expansion, Expansions};
use crate::model::*;
use crate::raw::RawSection;
use crate::values;

const DEFAULT_MAX_RESTARTS_PERIOD: Duration = Duration::from_secs(60);

/// The restart settings a group, or a program that is its own group, may set:
/// `strategy`, `max_restarts` (`Some(None)` is "unlimited") and
/// `max_restarts_period`; `None` where the key is absent.
pub(super) type GroupExtensions = (Option<Strategy>, Option<Option<u32>>, Option<Duration>);

/// Reads `strategy`, `max_restarts` and `max_restarts_period`.
pub(super) fn group_extensions(
    r: &mut Reader<'_>,
    exp: &Expansions,
    diags: &mut Diagnostics,
) -> GroupExtensions {
    let strategy =
        r.opt("strategy", exp, diags, |s| match s.trim().to_ascii_lowercase().as_str() {
            "one_for_one" => Ok(Strategy::OneForOne),
            "one_for_all" => Ok(Strategy::OneForAll),
            "rest_for_one" => Ok(Strategy::RestForOne),
            _ => Err(format!("'{s}' is not a strategy (one_for_one, one_for_all, rest_for_one)")),
        });
    let max_restarts =
        r.opt("max_restarts", exp, diags, |s| match s.trim().to_ascii_lowercase().as_str() {
            "unlimited" | "none" => Ok(None),
            _ => values::integer_in::<u32>(s, "max_restarts").map(Some),
        });
    let period = r.opt("max_restarts_period", exp, diags, values::duration);
    if let Some(Duration::ZERO) = period {
        diags.error(&r.section_place(), "max_restarts_period must be greater than zero");
    }
    (strategy, max_restarts, period)
}

/// One `[group:x]` as read, before its members are known to exist.
pub(super) struct GroupSection<'a> {
    name: String,
    section: &'a RawSection,
    members: Vec<String>,
    /// Where `programs=` is written, for errors about a member.
    members_place: Place,
    priority: i32,
    extensions: GroupExtensions,
    /// `env_file`: read by every member after `[supervisord]`'s.
    env_file: Vec<std::path::PathBuf>,
}

impl GroupSection<'_> {
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn env_file(&self) -> &[std::path::PathBuf] {
        &self.env_file
    }
}

/// Reads the `[group:x]` sections; returns them and each member program's group.
/// A program listed by two groups is an error.
pub(super) fn read_groups<'a>(
    group_sections: &[&'a RawSection],
    global_exp: &Expansions,
    host: &Expansion,
    env: &std::collections::BTreeMap<String, String>,
    diags: &mut Diagnostics,
) -> (HashMap<String, String>, Vec<GroupSection<'a>>) {
    let mut membership: HashMap<String, String> = HashMap::new();
    let mut groups = Vec::new();
    for section in group_sections {
        let raw_name = &section.name["group:".len()..];
        let place = section_place(section);
        let name = match values::name(raw_name) {
            Ok(n) => n,
            Err(message) => {
                diags.error(&place, message);
                continue;
            }
        };
        let exp = with(
            global_exp,
            &[
                ("here", here_str(section)),
                ("host_node_name", host.clone()),
                ("group_name", Expansion::Str(name.clone())),
            ],
        );
        let mut reader = Reader::new(section);
        let members = match reader.list("programs", &exp, diags, false) {
            Some((items, _, _)) => items.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>(),
            None => {
                diags.error(&place, "section has no programs value");
                Vec::new()
            }
        };
        let priority =
            reader.get("priority", &exp, diags, 999, |s| values::integer_in::<i32>(s, "priority"));
        let extensions = group_extensions(&mut reader, &exp, diags);
        let env_file = super::envfiles::key(&mut reader, &exp, env, diags);
        reader.warn_unknown(diags);
        let members_place = reader
            .raw
            .entries
            .iter()
            .find(|(k, _)| k == "programs")
            .map(|(k, v)| reader.place(k, v).place())
            .unwrap_or(place.clone());
        for member in &members {
            if let Some(other) = membership.insert(member.clone(), name.clone())
                && other != name
            {
                diags.error(
                    &members_place,
                    format!("program '{member}' is already a member of [group:{other}]"),
                );
            }
        }
        groups.push(GroupSection {
            name,
            section,
            members,
            members_place,
            priority,
            extensions,
            env_file,
        });
    }
    (membership, groups)
}

/// Builds the final groups: each `[group:x]` with the processes of the programs it
/// lists, then every program no group lists as a group of its own; then checks
/// for duplicate process names and orders groups and processes.
pub(super) fn assemble(
    programs: &mut [Program],
    group_sections: Vec<GroupSection<'_>>,
    diags: &mut Diagnostics,
) -> Vec<GroupConfig> {
    let mut groups: Vec<GroupConfig> = Vec::new();
    let mut group_origin: HashMap<String, String> = HashMap::new();
    let mut in_group: BTreeSet<usize> = BTreeSet::new();
    // Programs and fcgi-programs by name: what a [group:x] may list.
    let mut groupable: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, program) in programs.iter().enumerate() {
        if !matches!(program.kind, GroupKind::EventListener(_)) {
            groupable.entry(program.name.clone()).or_default().push(index);
        }
    }
    for group in group_sections {
        let processes = members(programs, &group, &groupable, &mut in_group, diags);
        let (strategy, max_restarts, period) = group.extensions;
        add_group(
            &mut groups,
            &mut group_origin,
            GroupConfig {
                name: group.name,
                kind: GroupKind::Heterogeneous,
                priority: group.priority,
                strategy: strategy.unwrap_or_default(),
                max_restarts: max_restarts.flatten(),
                max_restarts_period: period.unwrap_or(DEFAULT_MAX_RESTARTS_PERIOD),
                processes: processes.into_iter().map(std::sync::Arc::new).collect(),
            },
            &section_place(group.section),
            diags,
        );
    }
    for (index, program) in programs.iter_mut().enumerate() {
        if in_group.contains(&index) {
            continue;
        }
        let place = program.place.clone();
        add_group(
            &mut groups,
            &mut group_origin,
            GroupConfig {
                name: program.name.clone(),
                kind: program.kind.clone(),
                priority: program.priority,
                strategy: program.strategy.unwrap_or_default(),
                max_restarts: program.max_restarts.flatten(),
                max_restarts_period: program
                    .max_restarts_period
                    .unwrap_or(DEFAULT_MAX_RESTARTS_PERIOD),
                processes: std::mem::take(&mut program.processes)
                    .into_iter()
                    .map(std::sync::Arc::new)
                    .collect(),
            },
            &place,
            diags,
        );
    }
    finish(&mut groups, diags);
    groups
}

/// Moves the processes of the programs `group` lists into one list; unknown and
/// ambiguous names are errors.
fn members(
    programs: &mut [Program],
    group: &GroupSection<'_>,
    groupable: &HashMap<String, Vec<usize>>,
    in_group: &mut BTreeSet<usize>,
    diags: &mut Diagnostics,
) -> Vec<ProcessConfig> {
    let mut processes = Vec::new();
    for member in &group.members {
        let candidates = groupable.get(member.as_str()).map_or(&[][..], Vec::as_slice);
        match candidates {
            [] => diags.error(
                &group.members_place,
                format!("names unknown program or fcgi-program {member}"),
            ),
            [index] => {
                // A program listed twice in one group is taken once.
                in_group.insert(*index);
                let one = &mut programs[*index];
                processes.append(&mut one.processes);
                if one.strategy.is_some()
                    || one.max_restarts.is_some()
                    || one.max_restarts_period.is_some()
                {
                    diags.warn(
                        &one.place,
                        format!("strategy/max_restarts settings are ignored for a member of [group:{}]; set them on the group", group.name),
                    );
                }
            }
            _ => diags.error(
                &group.members_place,
                format!("names ambiguous program or fcgi-program {member}"),
            ),
        }
    }
    processes
}

/// Adds a group unless its name is taken, which is an error at `place`.
fn add_group(
    groups: &mut Vec<GroupConfig>,
    origin: &mut HashMap<String, String>,
    group: GroupConfig,
    place: &Place,
    diags: &mut Diagnostics,
) {
    let section = place.section.clone().unwrap_or_default();
    if let Some(first) = origin.get(&group.name) {
        diags.error(place, format!("group name '{}' is already used by [{first}]", group.name));
        return;
    }
    origin.insert(group.name.clone(), section);
    groups.push(group);
}

/// Reports duplicate process names inside a group and puts groups and their
/// processes in start order: priority, then name.
fn finish(groups: &mut Vec<GroupConfig>, diags: &mut Diagnostics) {
    for group in groups.iter_mut() {
        let mut seen = BTreeSet::new();
        for process in &group.processes {
            if !seen.insert(process.name.clone()) {
                let place = Place {
                    file: process.origin.file.clone(),
                    line: Some(process.origin.line),
                    section: None,
                    key: None,
                };
                diags.error(
                    &place,
                    format!("duplicate process name '{}' in group '{}'", process.name, group.name),
                );
            }
        }
        group.processes.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        // A pushed-to Vec of these ~700-byte records starts at capacity 4; the
        // daemon keeps this model for its lifetime, so a one-process group would
        // otherwise carry three empty slots (about 2 KiB per program).
        group.processes.shrink_to_fit();
    }
    groups.shrink_to_fit();

    groups.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
}
