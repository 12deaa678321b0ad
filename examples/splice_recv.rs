//! Receives with splice(2), as proxies do: the bytes go from the socket into a pipe
//! without passing through a read() or recvmsg().
//!
//! usage: splice_recv ADDR SIZE
//!
//! Connects to ADDR (an echo server), prints `local ADDR:PORT`, sends SIZE bytes,
//! then splices SIZE bytes from the socket into a pipe, draining the pipe as it
//! goes, prints `spliced SIZE` and exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::ExitCode;

use nix::fcntl::{splice, SpliceFFlags};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: splice_recv ADDR SIZE");
        return ExitCode::from(2);
    }
    let size: usize = args[2].parse().expect("SIZE");
    let mut s = TcpStream::connect(&args[1]).expect("connect");
    println!("local {}", s.local_addr().unwrap());
    s.write_all(&vec![b'x'; size]).expect("send");
    let (pipe_r, pipe_w) = nix::unistd::pipe().expect("pipe");
    let mut pipe_r = std::fs::File::from(pipe_r);
    let mut drained = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < size {
        let n = splice(
            s.as_fd(),
            None,
            pipe_w.as_fd(),
            None,
            size - got,
            SpliceFFlags::empty(),
        )
        .expect("splice");
        assert!(n > 0, "the peer closed after {got} bytes");
        pipe_r.read_exact(&mut drained[..n]).expect("drain");
        got += n;
    }
    println!("spliced {got}");
    ExitCode::SUCCESS
}
