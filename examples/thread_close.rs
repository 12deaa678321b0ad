//! Closes a TCP socket while another thread of the process is blocked reading it:
//! the close() only drops the descriptor, and the kernel lets the socket go when
//! the reading thread's call returns.
//!
//! usage: thread_close ADDR [TIMEOUT_MS] [--udp]
//!
//! Connects to ADDR (with --udp, a UDP socket connected to ADDR) and prints
//! `local ADDR:PORT`. A second thread blocks in
//! read(2); after one second the main thread closes the descriptor and prints
//! `closed`. Whatever ends the read (data from the peer, a reset, or TIMEOUT_MS
//! passing with neither) is printed as `read N` or `read error ERRNO`; then it
//! waits one more second and exits 0, so a CLOSE reported only at exit would show
//! a lifetime longer than the read took by a second or more.

use std::net::{TcpStream, UdpSocket};
use std::os::fd::IntoRawFd;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let udp = args.iter().any(|a| a == "--udp");
    args.retain(|a| a != "--udp");
    let timeout = args.get(2).map(|t| t.parse::<u64>());
    let (Some(addr), None | Some(Ok(_))) = (args.get(1), &timeout) else {
        eprintln!("usage: thread_close ADDR [TIMEOUT_MS] [--udp]");
        return ExitCode::from(2);
    };
    let timeout = timeout.and_then(Result::ok).map(Duration::from_millis);
    let (fd, local): (OwnedFd, _) = if udp {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.connect(addr).expect("connect");
        s.set_read_timeout(timeout).expect("SO_RCVTIMEO");
        let local = s.local_addr().unwrap();
        (s.into(), local)
    } else {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(timeout).expect("SO_RCVTIMEO");
        let local = s.local_addr().unwrap();
        (s.into(), local)
    };
    println!("local {local}");
    let fd = fd.into_raw_fd();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a buffer of the given size; the descriptor may be closed
        // meanwhile, which is the point: the call holds its own reference.
        let n = unsafe { nix::libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            println!(
                "read error {}",
                std::io::Error::last_os_error().raw_os_error().unwrap()
            );
        } else {
            println!("read {n}");
        }
    });
    thread::sleep(Duration::from_secs(1));
    // SAFETY: the descriptor is ours; the reader thread only uses the number.
    assert_eq!(unsafe { nix::libc::close(fd) }, 0, "close");
    println!("closed");
    reader.join().unwrap();
    thread::sleep(Duration::from_secs(1));
    ExitCode::SUCCESS
}
