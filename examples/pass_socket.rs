//! Hands a connected TCP socket to another process over a unix-domain socket
//! (SCM_RIGHTS) and closes its own descriptor: the socket lives on in the other
//! process, which lets it go later.
//!
//! usage: pass_socket ADDR UNIX_PATH
//!
//! Connects to ADDR (an echo server), prints `local ADDR:PORT`, sends 3 bytes and
//! reads them back, connects to UNIX_PATH, passes the socket, closes its copy and
//! prints `passed`; then waits until UNIX_PATH's peer closes the unix connection
//! and exits 0.

use std::io::{IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: pass_socket ADDR UNIX_PATH");
        return ExitCode::from(2);
    }
    let mut s = TcpStream::connect(&args[1]).expect("connect");
    println!("local {}", s.local_addr().unwrap());
    s.write_all(b"abc").expect("send");
    s.read_exact(&mut [0u8; 3]).expect("recv");
    let mut unix = UnixStream::connect(&args[2]).expect("unix connect");
    let fd = s.into_raw_fd();
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
    ExitCode::SUCCESS
}
