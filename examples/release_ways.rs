//! Lets go of connected sockets without close(): dup2 over one, close_range on
//! another, then closes a third the usual way, so a tracer's CLOSE lines show
//! whether it saw each release when it happened.
//!
//! usage: release_ways ADDR
//!
//! For each of three TCP connections to ADDR (an echo server serving three), in
//! turn: prints `local ADDR:PORT`, sends 3 bytes and reads them back, then
//! releases it: the first by dup2(2) of /dev/null onto its descriptor, the second
//! by close_range(2), the third by close(2). Exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::process::ExitCode;

fn exchange(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    println!("local {}", s.local_addr().unwrap());
    s.write_all(b"abc").expect("send");
    s.read_exact(&mut [0u8; 3]).expect("recv");
    s
}

fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: release_ways ADDR");
        return ExitCode::from(2);
    };
    let null = std::fs::File::open("/dev/null").expect("/dev/null");

    let fd = exchange(&addr).into_raw_fd();
    // SAFETY: both descriptors are ours; dup2 replaces the socket's only reference.
    assert_eq!(unsafe { nix::libc::dup2(null.as_raw_fd(), fd) }, fd, "dup2");

    let fd = exchange(&addr).into_raw_fd();
    // SAFETY: closes exactly the descriptor we own.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, fd, fd, 0) };
    assert_eq!(rc, 0, "close_range: {}", std::io::Error::last_os_error());

    drop(exchange(&addr));
    ExitCode::SUCCESS
}
