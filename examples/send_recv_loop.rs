//! A busy socket user: N 64-byte writes into a loopback TCP connection (or, with
//! `unix`, a unix-domain socketpair), each read back from the other end in the
//! same thread, timed.
//!
//! usage: send_recv_loop N [unix]
//!
//! Prints `ns_per_pair X`. One thread that never blocks: the time is the calls'
//! CPU cost, hooks included, without wake-ups.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(Ok(n)), unix) = (args.get(1).map(|a| a.parse::<u32>()), args.get(2)) else {
        eprintln!("usage: send_recv_loop N [unix]");
        return ExitCode::from(2);
    };
    let (mut a, mut b): (Box<dyn Write>, Box<dyn Read>) = if unix.is_some_and(|u| u == "unix") {
        let (a, b) = UnixStream::pair().expect("socketpair");
        (Box::new(a), Box::new(b))
    } else {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (b, _) = listener.accept().expect("accept");
        a.set_nodelay(true).unwrap();
        (Box::new(a), Box::new(b))
    };
    let mut buf = [7u8; 64];
    let start = Instant::now();
    for _ in 0..n {
        a.write_all(&buf).unwrap();
        b.read_exact(&mut buf).unwrap();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n.max(1));
    println!("ns_per_pair {ns:.1}");
    ExitCode::SUCCESS
}
