use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/sockwatch.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH is set by cargo");
    let vmlinux = PathBuf::from("vmlinux").join(&arch);
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            "-Wall".into(),
            "-Werror".into(),
            format!("-I{}", vmlinux.display()),
        ])
        .build_and_generate(out.join("sockwatch.skel.rs"))
        .expect("compiling the BPF program (see clang's message above)");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-changed={}", vmlinux.display());
}
