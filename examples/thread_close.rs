//! Closes a TCP socket while another thread of the process is blocked reading it:
//! the close() only drops the descriptor, and the kernel lets the socket go when
//! the reading thread's call returns.
//!
//! usage: thread_close ADDR
//!
//! Connects to ADDR and prints `local ADDR:PORT`. A second thread blocks in
//! read(2); after one second the main thread closes the descriptor and prints
//! `closed`. Whatever ends the read (data from the peer, or a reset) is printed as
//! `read N` or `read error ERRNO`; then it waits one more second and exits 0, so a
//! CLOSE reported only at exit would show a lifetime of two seconds or more.

use std::net::TcpStream;
use std::os::fd::IntoRawFd;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: thread_close ADDR");
        return ExitCode::from(2);
    };
    let s = TcpStream::connect(&addr).expect("connect");
    println!("local {}", s.local_addr().unwrap());
    let fd = s.into_raw_fd();
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
