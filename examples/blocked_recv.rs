//! Many threads blocked in recv() at once, as thread-per-connection clients and
//! servers are: a tracer must count every byte they receive, however many wait.
//! (A return probe made through perf follows max(10, 2 x CPUs) waiting threads.)
//!
//! usage: blocked_recv N
//!
//! Listens on 127.0.0.1, starts N threads that each connect and block in recv(),
//! waits until all N are blocked, then sends connection i 1000+i bytes. Each
//! thread reads until it has all of its bytes and closes. Prints `local ADDR` for
//! each connection (the receiving end), then `received TOTAL`, and exits 0.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

#[path = "shared/threads.rs"]
mod threads;

fn main() -> ExitCode {
    let Some(Ok(n)) = std::env::args().nth(1).map(|n| n.parse::<usize>()) else {
        eprintln!("usage: blocked_recv N");
        return ExitCode::from(2);
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let mut readers = Vec::new();
    let mut accepted = Vec::new();
    for i in 0..n {
        let stream = TcpStream::connect(addr).expect("connect");
        let local = stream.local_addr().unwrap();
        accepted.push(listener.accept().expect("accept").0);
        readers.push((
            local,
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 1000 + i];
                let mut got = 0;
                while got < buf.len() {
                    match stream.read(&mut buf[got..]) {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(e) => panic!("recv: {e}"),
                    }
                }
                got
            }),
        ));
    }
    threads::wait_until_blocked(n);
    for (i, stream) in accepted.iter_mut().enumerate() {
        stream.write_all(&vec![b'r'; 1000 + i]).expect("send");
    }
    let mut total = 0;
    for (local, reader) in readers {
        println!("local {local}");
        total += reader.join().unwrap();
    }
    println!("received {total}");
    ExitCode::SUCCESS
}
