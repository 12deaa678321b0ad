//! Many threads blocked in accept() at once, as thread-per-connection servers do:
//! a tracer must see every accept, however many are waiting.
//!
//! usage: accept_storm serve ADDR N | accept_storm connect ADDR N
//!
//! `serve` listens on ADDR (port 0 picks one), starts N threads that each block in
//! accept() and close what they get, waits until all N are blocked, prints
//! `ready PORT`, and exits 0 once every thread has accepted. `connect` opens N
//! connections to ADDR, all before closing any, and exits 0.

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;

#[path = "shared/threads.rs"]
mod threads;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(addr), Some(Ok(n))) = (
        args.get(1),
        args.get(2),
        args.get(3).map(|n| n.parse::<usize>()),
    ) else {
        eprintln!("usage: accept_storm serve|connect ADDR N");
        return ExitCode::from(2);
    };
    match mode.as_str() {
        "serve" => {
            let listener = Arc::new(TcpListener::bind(addr).expect("bind"));
            let threads: Vec<_> = (0..n)
                .map(|_| {
                    let l = Arc::clone(&listener);
                    std::thread::spawn(move || drop(l.accept().expect("accept")))
                })
                .collect();
            threads::wait_until_blocked(n);
            println!("ready {}", listener.local_addr().unwrap().port());
            for t in threads {
                t.join().unwrap();
            }
        }
        "connect" => {
            let conns: Vec<TcpStream> = (0..n)
                .map(|_| TcpStream::connect(addr).expect("connect"))
                .collect();
            drop(conns);
        }
        _ => {
            eprintln!("usage: accept_storm serve|connect ADDR N");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
