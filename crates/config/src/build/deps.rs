//! `depends_on` resolution: each item names a program (`web`) or one process
//! (`group:name`), optionally with the condition to wait for (`db:healthy`);
//! unknown targets, conditions a target cannot meet, and cycles are reported.

use std::collections::{BTreeMap, HashMap};

use super::Program;
use crate::error::{Diagnostics, Place};
use crate::model::*;

const CONDITIONS: &[(&str, DependencyCondition)] = &[
    ("started", DependencyCondition::Started),
    ("running", DependencyCondition::Running),
    ("healthy", DependencyCondition::Healthy),
    ("completed", DependencyCondition::Completed),
    ("completed_successfully", DependencyCondition::CompletedSuccessfully),
];

/// The dependency graph: each program's targets (by program name), with the place
/// of the `depends_on` that named each.
type Edges<'a> = BTreeMap<&'a str, Vec<(&'a str, Place)>>;

/// Resolves `depends_on` against the programs and instances that exist and
/// rejects cycles (printing the cycle); returns each program's dependencies.
pub(super) fn resolve_dependencies(
    programs: &[Program],
    d: &mut Diagnostics,
) -> HashMap<String, Vec<Dependency>> {
    // The usual config has no `depends_on`: no lookup tables for thousands of
    // programs then.
    if programs.iter().all(|p| p.depends_on.is_empty()) {
        return HashMap::new();
    }
    let by_name: HashMap<&str, &Program> = programs.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut namespecs: HashMap<String, &Program> = HashMap::new();
    for p in programs {
        for process in &p.processes {
            namespecs.insert(format!("{}:{}", process.group, process.name), p);
        }
    }
    let targets = Targets { by_name, namespecs };
    let mut resolved: HashMap<&str, Vec<Dependency>> = HashMap::new();
    let mut edges: Edges<'_> = BTreeMap::new();
    for p in programs {
        let mut deps = Vec::new();
        for (item, place) in &p.depends_on {
            let Some((target, dependency)) = targets.resolve(item, place, d) else { continue };
            edges.entry(p.name.as_str()).or_default().push((target.name.as_str(), place.clone()));
            deps.push(dependency);
        }
        if !deps.is_empty() {
            resolved.insert(p.name.as_str(), deps);
        }
    }
    report_cycles(programs, &edges, d);
    resolved.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What a `depends_on` item may name.
struct Targets<'a> {
    /// Programs by name.
    by_name: HashMap<&'a str, &'a Program>,
    /// Programs by the `group:name` of each of their processes.
    namespecs: HashMap<String, &'a Program>,
}

impl<'a> Targets<'a> {
    /// One `depends_on` item: its target program and the dependency, or `None`
    /// (reported) when it names nothing that exists.
    fn resolve(
        &self,
        item: &str,
        place: &Place,
        d: &mut Diagnostics,
    ) -> Option<(&'a Program, Dependency)> {
        if item.is_empty() {
            d.error(place, "empty entry in depends_on");
            return None;
        }
        let (name, condition) = match item.rsplit_once(':') {
            Some((name, cond)) => {
                match CONDITIONS.iter().find(|(w, _)| *w == cond.trim().to_ascii_lowercase()) {
                    Some((_, c)) => (name.trim(), *c),
                    None => (item, DependencyCondition::Running),
                }
            }
            None => (item, DependencyCondition::Running),
        };
        let target = if name.contains(':') {
            self.namespecs.get(name).copied()
        } else {
            self.by_name.get(name).copied()
        };
        let Some(target) = target else {
            let known = if name.contains(':') { "process" } else { "program" };
            d.error(place, format!("depends on unknown {known} '{name}'"));
            return None;
        };
        if condition == DependencyCondition::Healthy
            && target.processes.first().is_some_and(|t| t.readiness.is_none())
        {
            d.error(
                place,
                format!("'{item}' needs a readiness probe (ready_*) on program '{}'", target.name),
            );
        }
        if matches!(
            condition,
            DependencyCondition::Completed | DependencyCondition::CompletedSuccessfully
        ) && target.processes.first().is_some_and(|t| t.autorestart == AutoRestart::True)
        {
            d.warn(
                place,
                format!(
                    "'{item}': program '{}' has autorestart=true and may never complete",
                    target.name
                ),
            );
        }
        Some((target, Dependency { name: name.to_string(), condition }))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Colour {
    White,
    Grey,
    Black,
}

/// Cycle detection: depth-first search with colours; a grey node reached again
/// closes a cycle, printed from that node back to itself.
fn report_cycles(programs: &[Program], edges: &Edges<'_>, d: &mut Diagnostics) {
    let mut colour: HashMap<&str, Colour> =
        programs.iter().map(|p| (p.name.as_str(), Colour::White)).collect();
    for p in programs {
        if colour.get(p.name.as_str()) == Some(&Colour::White) {
            visit(p.name.as_str(), edges, &mut colour, &mut Vec::new(), d);
        }
    }
}

fn visit<'a>(
    node: &'a str,
    edges: &Edges<'a>,
    colour: &mut HashMap<&'a str, Colour>,
    stack: &mut Vec<&'a str>,
    d: &mut Diagnostics,
) {
    colour.insert(node, Colour::Grey);
    stack.push(node);
    for (next, place) in edges.get(node).map(Vec::as_slice).unwrap_or(&[]) {
        match colour.get(next).copied().unwrap_or(Colour::Black) {
            Colour::White => visit(next, edges, colour, stack, d),
            Colour::Grey => {
                let start = stack.iter().position(|n| n == next).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(next);
                d.error(place, format!("dependency cycle: {}", cycle.join(" -> ")));
            }
            Colour::Black => {}
        }
    }
    stack.pop();
    colour.insert(node, Colour::Black);
}
