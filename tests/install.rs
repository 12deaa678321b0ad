//! The install command: scripts/install into a fresh prefix puts a self-contained
//! binary, a man page that renders and completions each shell accepts.

use std::path::Path;
use std::process::Command;

fn run(program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs it)"));
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn install_puts_binary_man_page_and_completions_in_place() {
    let prefix = std::env::temp_dir().join(format!("sockwatch-install-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    run(script.to_str().unwrap(), &[prefix.to_str().unwrap()]);
    let path = |p: &str| prefix.join(p).to_string_lossy().into_owned();

    let bin = path("bin/sockwatch");
    assert!(run(&bin, &["--version"]).starts_with("sockwatch "));
    // No shared library at all: it runs where no C library is installed.
    assert!(!run("readelf", &["-d", &bin]).contains("NEEDED"));

    let man = run(
        "man",
        &["-P", "cat", "-l", &path("share/man/man8/sockwatch.8")],
    );
    assert!(man.starts_with("sockwatch(8)"), "{man}");
    for needle in [
        "--max-sockets",
        "--buffer-size",
        "EXIT STATUS",
        "EXAMPLES",
        "CAP_PERFMON",
    ] {
        assert!(
            man.contains(needle),
            "{needle} missing from the man page:\n{man}"
        );
    }

    let bash = path("share/bash-completion/completions/sockwatch");
    let registered = run(
        "bash",
        &["-c", &format!("source {bash} && complete -p sockwatch")],
    );
    assert!(registered.contains("sockwatch"), "{registered}");
    run("zsh", &["-n", &path("share/zsh/site-functions/_sockwatch")]);
    run(
        "fish",
        &[
            "--no-execute",
            &path("share/fish/vendor_completions.d/sockwatch.fish"),
        ],
    );
    std::fs::remove_dir_all(&prefix).unwrap();
}
