//! Hands a connected TCP socket to another process over a unix-domain socket
//! (SCM_RIGHTS) and closes its own descriptor: the socket lives on in the other
//! process, which lets it go later.
//!
//! usage: pass_socket ADDR|pair UNIX_PATH
//!
//! Connects to ADDR (an echo server), prints `local ADDR:PORT`, sends 3 bytes and
//! reads them back, connects to UNIX_PATH, passes the socket, closes its copy and
//! prints `passed`; then waits until UNIX_PATH's peer closes the unix connection
//! and exits 0. With `pair` instead of ADDR, the socket passed is one end of a
//! unix-domain socketpair that sent 3 bytes to the other (`local pair`).

use std::io::{IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: pass_socket ADDR|pair UNIX_PATH");
        return ExitCode::from(2);
    }
    // The other end of a socketpair stays open until the end.
    let mut other = None;
    let fd = if args[1] == "pair" {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        println!("local pair");
        a.write_all(b"abc").expect("send");
        b.read_exact(&mut [0u8; 3]).expect("recv");
        other = Some(b);
        a.into_raw_fd()
    } else {
        let mut s = TcpStream::connect(&args[1]).expect("connect");
        println!("local {}", s.local_addr().unwrap());
        s.write_all(b"abc").expect("send");
        s.read_exact(&mut [0u8; 3]).expect("recv");
        s.into_raw_fd()
    };
    let mut unix = UnixStream::connect(&args[2]).expect("unix connect");
    let fds = [fd];
    sendmsg::<()>(
        unix.as_raw_fd(),
        &[IoSlice::new(b"x")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    // SAFETY: our own copy; the receiver holds another reference.
    assert_eq!(unsafe { nix::libc::close(fd) }, 0, "close");
    println!("passed");
    let _ = unix.read(&mut [0u8; 1]);
    drop(other);
    ExitCode::SUCCESS
}
