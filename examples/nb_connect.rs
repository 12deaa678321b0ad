//! One TCP connect whose outcome the tests choose, reported the way event loops learn it.
//!
//! usage: nb_connect ADDR [--blocking] [--syncnt N] [--v6only] [--reconnect]
//!
//! By default the socket is non-blocking: connect() returns EINPROGRESS and the
//! outcome arrives through poll and SO_ERROR, as for curl or nginx upstreams;
//! with --reconnect, through a second connect(), as hiredis and redis-cli learn it.
//! --blocking waits inside connect(). --syncnt N limits SYN retransmits
//! (TCP_SYNCNT), so a connect nobody answers times out in seconds. --v6only sets
//! IPV6_V6ONLY, so a v4-mapped ADDR fails at once with ENETUNREACH.
//! Prints `local ADDR:PORT` and `result ok` or `result ERRNO`, and exits 0.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, getsockname, getsockopt, setsockopt, socket, sockopt, AddressFamily, SockFlag,
    SockType, SockaddrStorage,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(addr) = args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()) else {
        eprintln!("usage: nb_connect ADDR [--blocking] [--syncnt N] [--v6only] [--reconnect]");
        return ExitCode::from(2);
    };
    let has = |flag: &str| args.iter().position(|a| a == flag);
    let blocking = has("--blocking").is_some();
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let flags = if blocking {
        SockFlag::empty()
    } else {
        SockFlag::SOCK_NONBLOCK
    };
    let fd = socket(family, SockType::Stream, flags, None).expect("socket");
    if let Some(i) = has("--syncnt") {
        let n: nix::libc::c_int = args[i + 1].parse().expect("N");
        // SAFETY: a plain int option on a socket we own; nix has no wrapper for TCP_SYNCNT.
        let rc = unsafe {
            nix::libc::setsockopt(
                fd.as_raw_fd(),
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_SYNCNT,
                (&n as *const nix::libc::c_int).cast(),
                std::mem::size_of_val(&n) as nix::libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "TCP_SYNCNT");
    }
    if has("--v6only").is_some() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).expect("IPV6_V6ONLY");
    }
    let started = connect(fd.as_raw_fd(), &SockaddrStorage::from(addr));
    let local: SockaddrStorage = getsockname(fd.as_raw_fd()).expect("getsockname");
    println!("local {local}");
    let result = match started {
        Err(Errno::EINPROGRESS) => {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
            poll(&mut fds, PollTimeout::from(60_000u16)).expect("poll");
            if has("--reconnect").is_some() {
                match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
                    // Connected: a second connect() says so.
                    Err(Errno::EISCONN) | Ok(()) => Errno::UnknownErrno,
                    Err(e) => e,
                }
            } else {
                Errno::from_raw(getsockopt(&fd, sockopt::SocketError).expect("SO_ERROR"))
            }
        }
        Err(e) => e,
        Ok(()) => Errno::UnknownErrno,
    };
    match result {
        Errno::UnknownErrno => println!("result ok"),
        e => println!("result {e:?}"),
    }
    ExitCode::SUCCESS
}
