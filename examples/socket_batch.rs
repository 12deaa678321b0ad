//! Holds many UDP sockets open at once: for filling sockwatch's socket table.
//!
//! usage: socket_batch COUNT
//!
//! Binds a receiver on 127.0.0.1, opens COUNT sockets connected to it, and only
//! then sends one byte from each, receives the COUNT bytes and closes the senders
//! in the order they were opened, then the receiver. Prints `receiver ADDR:PORT`
//! first, and `senders PORT...` with each sender's local port.

use std::net::UdpSocket;
use std::process::ExitCode;

fn main() -> ExitCode {
    let count: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) if n > 0 && n <= 4096 => n,
        _ => {
            eprintln!("usage: socket_batch COUNT (1 to 4096)");
            return ExitCode::from(2);
        }
    };
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = receiver.local_addr().unwrap();
    println!("receiver {addr}");
    let senders: Vec<UdpSocket> = (0..count)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.connect(addr).expect("connect");
            s
        })
        .collect();
    let ports: Vec<String> = senders
        .iter()
        .map(|s| s.local_addr().unwrap().port().to_string())
        .collect();
    println!("senders {}", ports.join(" "));
    for s in &senders {
        s.send(b"x").expect("send");
    }
    let mut buf = [0u8; 8];
    for _ in 0..count {
        receiver.recv(&mut buf).expect("recv");
    }
    drop(senders);
    drop(receiver);
    ExitCode::SUCCESS
}
