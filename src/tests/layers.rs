//! The sources keep the architecture DESIGN.md states: every module imports only modules below
//! it in the declared order, every system call is in the OS layer, and every `unsafe fn` says
//! what its callers must guarantee.

use std::path::{Path, PathBuf};

/// The layer order, read from DESIGN.md's "Layers, bottom to top" block: the one place it is
/// stated. Modules on one line (joined by `,`) share a layer.
fn declared_layers() -> Vec<Vec<String>> {
    let design = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("DESIGN.md")).unwrap();
    let start = design.find("<!-- layers -->").expect("DESIGN.md has no <!-- layers --> block");
    let block = &design[start..];
    let open = block.find("```").unwrap() + 3;
    let close = open + block[open..].find("```").unwrap();
    block[open..close]
        .split(['→', '\n'])
        .map(|layer| layer.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Every source file of the library, with its top-level module (`heap` for `src/heap/bins.rs`).
fn library_sources() -> Vec<(String, PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if path.is_dir() && !["cli", "clib", "tests"].contains(&name.as_str()) {
            for sub in std::fs::read_dir(&path).unwrap() {
                out.push((name.clone(), sub.unwrap().path()));
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            out.push((name, path));
        }
    }
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)] mod tests { ... }` block (tests may use anything).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests").map_or(text, |i| &text[..i])
}

/// The top-level modules a source refers to through `crate::`: in `use crate::{a, b::c}` lists
/// and in paths like `crate::a::f()`. Comment lines are skipped.
fn referenced_modules(text: &str) -> Vec<String> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let Some(list) = rest.strip_prefix('{') else {
            found.push(ident(rest));
            continue;
        };
        // A braced list: the first name of each item at the outer level (what follows it, like
        // `::{e, f}`, is inside that module).
        let (mut depth, mut item_start) = (0, true);
        for (k, ch) in list.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if depth == 0 && item_start && (c.is_alphanumeric() || c == '_') => {
                    found.push(ident(&list[k..]));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let layers = declared_layers();
    let rank = |m: &str| layers.iter().position(|l| l.iter().any(|x| x == m));
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (module, path) in library_sources() {
        seen.insert(module.clone());
        let Some(own) = rank(&module) else {
            problems.push(format!("{module} ({}) is not in DESIGN.md's layer list", path.display()));
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        for used in referenced_modules(without_tests(&text)) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => problems.push(format!("{}: {module} uses {used}, which is not below it", path.display())),
                None => problems.push(format!("{}: uses crate::{used}, which is not in the layer list", path.display())),
            }
        }
    }
    for layer in &layers {
        for m in layer {
            if !seen.contains(m) {
                problems.push(format!("DESIGN.md lists {m}, which has no source file"));
            }
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn the_layer_check_catches_a_wrong_import() {
    // `heap` is below `global`: a heap module that uses the global heap breaks the order.
    let layers = declared_layers();
    let rank = |m: &str| layers.iter().position(|l| l.iter().any(|x| x == m)).unwrap();
    let uses = referenced_modules("use crate::block::{self, HEADER};\nuse crate::{global::HEAP, os};\nfn f() { crate::stats::summary(); }");
    assert_eq!(uses, ["block", "global", "os", "stats"]);
    assert!(rank("global") > rank("heap") && rank("stats") > rank("heap"));
    assert!(rank("os") < rank("heap") && rank("block") < rank("heap"));
}

#[test]
fn system_calls_are_made_only_by_the_os_layer() {
    let mut problems = Vec::new();
    for (module, path) in library_sources() {
        if module == "os" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in without_tests(&text).lines().enumerate() {
            // A call: `libc::name(`. Constants and types (`libc::ENOMEM`, `libc::c_void`) are fine.
            let mut rest = line;
            while let Some(i) = rest.find("libc::") {
                rest = &rest[i + "libc::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if rest[name.len()..].starts_with('(') && name.chars().next().is_some_and(|c| c.is_lowercase()) {
                    problems.push(format!("{}:{}: libc::{name}", path.display(), n + 1));
                }
            }
            if line.contains("asm!(") {
                problems.push(format!("{}:{}: inline assembly outside os.rs", path.display(), n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "system calls outside os.rs:\n{}", problems.join("\n"));
}

#[test]
fn every_unsafe_fn_has_a_safety_section() {
    let mut problems = Vec::new();
    for (_, path) in library_sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let l = line.trim_start();
            let is_unsafe_fn = l.starts_with("unsafe fn ")
                || l.starts_with("pub unsafe fn ")
                || l.starts_with("pub(super) unsafe fn ")
                || l.starts_with("pub(crate) unsafe fn ");
            if !is_unsafe_fn {
                continue;
            }
            // The doc comment above it (attributes in between are skipped).
            let doc: Vec<&str> = lines[..n]
                .iter()
                .rev()
                .map(|l| l.trim_start())
                .skip_while(|l| l.starts_with("#["))
                .take_while(|l| l.starts_with("///"))
                .collect();
            if !doc.iter().any(|l| l.starts_with("/// # Safety")) {
                problems.push(format!("{}:{}: {}", path.display(), n + 1, l));
            }
        }
    }
    assert!(problems.is_empty(), "unsafe fn without a # Safety section:\n{}", problems.join("\n"));
}

#[test]
fn no_library_source_is_a_drawer() {
    // One concern per file: past about 600 lines a file holds more than one.
    let mut problems = Vec::new();
    for (_, path) in library_sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let n = without_tests(&text).lines().count();
        if n > 650 {
            problems.push(format!("{}: {n} lines", path.display()));
        }
    }
    assert!(problems.is_empty(), "files past 650 lines:\n{}", problems.join("\n"));
}
