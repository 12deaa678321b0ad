//! A non-blocking TCP connect to ADDR, where nothing should listen.
//!
//! usage: refused_connect ADDR
//!
//! connect() returns EINPROGRESS; the real outcome arrives later through poll
//! and SO_ERROR, the way curl and event-loop servers learn it. Prints
//! `local ADDR:PORT` and `result ERRNO` and exits 0 once the outcome is known.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, getsockname, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
    SockaddrStorage,
};

fn main() -> ExitCode {
    let Some(addr) = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        eprintln!("usage: refused_connect ADDR");
        return ExitCode::from(2);
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).expect("socket");
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Err(Errno::EINPROGRESS) => {}
        other => panic!("expected EINPROGRESS, got {other:?}"),
    }
    let local: SockaddrStorage = getsockname(fd.as_raw_fd()).expect("getsockname");
    println!("local {local}");
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::from(5000u16)).expect("poll");
    let err = getsockopt(&fd, sockopt::SocketError).expect("SO_ERROR");
    println!("result {:?}", Errno::from_raw(err));
    ExitCode::SUCCESS
}
