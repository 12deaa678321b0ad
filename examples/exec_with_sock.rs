//! Connects, sends, then execs with the socket still open: close-on-exec (Rust's
//! default for every descriptor) releases it inside the exec, with no close().
//!
//! usage: exec_with_sock ADDR SIZE [PROGRAM ARG...]
//!
//! Prints `local ADDR:PORT`, sends SIZE bytes to ADDR, reads them back, and execs
//! PROGRAM (default: itself with no arguments, which exits 0 at once).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return ExitCode::SUCCESS; // the re-executed image
    }
    let mut s = TcpStream::connect(&args[1]).expect("connect");
    println!("local {}", s.local_addr().unwrap());
    let n: usize = args[2].parse().expect("SIZE");
    s.write_all(&vec![b'x'; n]).expect("send");
    s.read_exact(&mut vec![0u8; n]).expect("recv");
    let err = match args.get(3) {
        Some(program) => Command::new(program).args(&args[4..]).exec(),
        None => Command::new(std::env::current_exe().unwrap()).exec(),
    };
    panic!("exec: {err}");
}
