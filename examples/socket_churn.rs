//! Creates sockets that never need a CLOSE line and sockets that do, while one
//! connection stays open: for counting what a full socket table turns away.
//!
//! usage: socket_churn ADDR UNUSED CONNECTS
//!
//! Connects to ADDR and keeps that connection, printing `local ADDR:PORT`. Then
//! creates UNUSED TCP sockets one at a time, closing each unused with
//! close_range(2); then connects to ADDR and closes the connection CONNECTS times.
//! Exits 0.

use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| args.get(i).and_then(|c| c.parse::<u32>().ok());
    let (Some(addr), Some(unused), Some(connects)) = (args.get(1), number(2), number(3)) else {
        eprintln!("usage: socket_churn ADDR UNUSED CONNECTS");
        return ExitCode::from(2);
    };
    let held = TcpStream::connect(addr).expect("connect");
    println!("local {}", held.local_addr().unwrap());
    for _ in 0..unused {
        let s: OwnedFd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        let fd = s.as_raw_fd();
        std::mem::forget(s);
        // SAFETY: closes exactly the descriptor just created.
        let rc = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, fd, fd, 0) };
        assert_eq!(rc, 0, "close_range: {}", std::io::Error::last_os_error());
    }
    for _ in 0..connects {
        drop(TcpStream::connect(addr).expect("connect"));
    }
    drop(held);
    ExitCode::SUCCESS
}
