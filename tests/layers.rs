//! src/ is built in layers, and each imports only those below it: the model (which
//! imports nothing of the crate), the OS around the hooks, the configuration, then
//! the kernel side and the output side by side (neither imports the other), the
//! poll loop, the report, and main.rs, which only dispatches. This reads every
//! `crate::` path in src/ (tests included) and fails on one that points up or
//! sideways, or into a folder this list does not know.

use std::path::{Path, PathBuf};

/// Each top-level module of src/ and its layer: a module may use only lower layers.
const LAYERS: [(&str, u8); 8] = [
    ("model", 1),
    ("os", 2),
    ("config", 3),
    ("kernel", 4),
    ("output", 4),
    ("tracer", 5),
    ("report", 6),
    ("main", 7),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The modules `text` names as `crate::NAME`.
fn crate_paths(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_layer_imports_only_those_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "read {} files of src/", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = layer(&module) else {
            wrong.push(format!(
                "{}: in no layer (add its folder to LAYERS)",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                Some(l) => wrong.push(format!(
                    "{}: {module} (layer {own}) uses crate::{used} (layer {l})",
                    file.display()
                )),
                None => wrong.push(format!("{}: crate::{used} is in no layer", file.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_a_path_that_points_up() {
    assert_eq!(
        crate_paths("use crate::model::event::Event;\nlet x = crate::tracer::run;"),
        ["model", "tracer"]
    );
    assert!(layer("model") < layer("os") && layer("kernel") == layer("output"));
    assert_eq!(
        module_of(Path::new("/s"), Path::new("/s/kernel/live.rs")),
        "kernel"
    );
    assert_eq!(module_of(Path::new("/s"), Path::new("/s/main.rs")), "main");
}
