//! Holds many UDP sockets open at once: for filling sockwatch's socket table.
//!
//! usage: socket_batch COUNT [--recv-from]
//!
//! Binds a receiver on 127.0.0.1, opens COUNT sockets connected to it, and only
//! then sends one byte from each, receives the COUNT bytes and closes the senders
//! in the order they were opened, then the receiver. Prints `receiver ADDR:PORT`
//! first, and `senders PORT...` with each sender's local port. With `--recv-from`
//! the receiver takes each byte as soon as it is sent (a socket's queue holds a
//! few hundred), with the sender's address, so each datagram has a peer of its own.

use std::net::UdpSocket;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (count, recv_from) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [n] => (n.parse(), false),
        [n, "--recv-from"] => (n.parse(), true),
        _ => ("".parse(), false),
    };
    let count: usize = match count {
        Ok(n) if n > 0 && n <= 8192 => n,
        _ => {
            eprintln!("usage: socket_batch COUNT [--recv-from] (COUNT 1 to 8192)");
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
    let mut buf = [0u8; 8];
    if recv_from {
        for s in &senders {
            s.send(b"x").expect("send");
            receiver.recv_from(&mut buf).expect("recv_from");
        }
    } else {
        for s in &senders {
            s.send(b"x").expect("send");
        }
        for _ in 0..count {
            receiver.recv(&mut buf).expect("recv");
        }
    }
    drop(senders);
    drop(receiver);
    ExitCode::SUCCESS
}
