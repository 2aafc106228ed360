//! The crate's module layering, checked: every module uses only the modules
//! listed before it in [`LAYERS`], so the modules form no import cycle. A new
//! `use crate::…` that points down the list fails here, with the line.

use std::path::{Path, PathBuf};

/// The modules from the bottom up. A module uses only modules listed
/// before it.
const LAYERS: &[&str] = &[
    // Leaves: formatting, exit reasons, restart rules, errors, panics.
    "format",
    "exit",
    "restart",
    "error",
    "panic",
    "backoff",
    "intensity",
    "spin",
    // The wait-for graph of calls, and the watchdog's side of a runner.
    "waitfor",
    "watchdog",
    // Actors and their mailboxes.
    "addr",
    "actor",
    // What the tree reports, and how a runner reports to its supervisor.
    "observe",
    "link",
    // A child's thread, its specification, and the supervisor's inbox.
    "runner",
    "spec",
    "protocol",
    // Supervisors, and the system at the root.
    "supervisor",
    "system",
];

/// The module names lib.rs declares.
fn declared(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let mut names: Vec<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned))
        .filter(|name| name != "layers")
        .collect();
    names.sort();
    names
}

/// The files of module `name`: `name.rs`, or everything in `name/`.
fn files(src: &Path, name: &str) -> Vec<PathBuf> {
    let dir = src.join(name);
    if dir.is_dir() {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&dir).expect("read dir").map(|e| e.expect("entry").path()).collect();
        files.sort();
        files
    } else {
        vec![src.join(format!("{name}.rs"))]
    }
}

/// The first path segments after `crate::` on a line of code, including
/// those inside `crate::{a::X, b}`.
fn used(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                found.push(segment(item.trim()));
            }
        } else {
            found.push(segment(rest));
        }
    }
    found
}

fn segment(path: &str) -> String {
    path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

#[test]
fn each_module_uses_only_the_modules_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut listed: Vec<String> = LAYERS.iter().map(|m| (*m).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, declared(&src), "LAYERS must list every module of lib.rs");
    let order = LAYERS;
    let mut wrong = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        for file in files(&src, module) {
            let text = std::fs::read_to_string(&file).expect("read module");
            // Unit tests may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for name in used(line) {
                    match order.iter().position(|m| *m == name) {
                        Some(other) if other <= rank => {}
                        Some(_) => wrong.push(format!(
                            "{}:{}: {module} uses {name}, listed after it in LAYERS",
                            file.display(),
                            n + 1
                        )),
                        // A re-export from lib.rs hides which module is used.
                        None => wrong.push(format!(
                            "{}:{}: `crate::{name}`: name the module instead",
                            file.display(),
                            n + 1
                        )),
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "module layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_plain_uses() {
    assert_eq!(used("use crate::{exit::ExitReason, restart};"), ["exit", "restart"]);
    assert_eq!(used("let x: crate::spec::ChildSpec = crate::format::human(d);"), ["spec", "format"]);
    assert!(used("use std::fmt;").is_empty());
}
