//! A TCP or UDP echo server: a deterministic workload for sockwatch's tests and demo.
//!
//! usage: echo_server tcp|udp ADDR COUNT [--threads] [--fork]
//!
//! Binds ADDR (port 0 picks one), prints `ready PORT`, then echoes until it has
//! served COUNT TCP connections (each until the client closes) or COUNT UDP
//! datagrams, and exits 0. TCP listens with a backlog of 64. With --threads the
//! TCP connections are accepted by a thread named `acceptor` and served by threads
//! named `worker-N`, so the process name differs from its threads' names. With
//! --fork (TCP) it daemonizes the classic way: it listens, forks, and the parent
//! exits; the child prints `ready PORT` once the parent is gone, then serves.
//! With --fork-each (TCP) it serves each connection in a forked child, as socat
//! and sshd do: the parent closes its copy at once (the child waits for that) and
//! goes on accepting; the child exits holding the connection, without closing it. The parent exits once every
//! child has.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::thread;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

fn serve(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => stream.write_all(&buf[..n]).expect("echo"),
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn tcp_listener(addr: SocketAddr) -> TcpListener {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd =
        socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    setsockopt(&fd, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .expect("bind");
    listen(&fd, Backlog::new(64).unwrap()).expect("listen");
    TcpListener::from(fd)
}

/// Forks; the parent exits, the child returns once it has been reparented.
fn daemonize() {
    let parent = nix::unistd::getpid();
    // SAFETY: single-threaded here; the child only continues with plain Rust code.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Parent { .. } => std::process::exit(0),
        nix::unistd::ForkResult::Child => {
            while nix::unistd::getppid() == parent {
                thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: echo_server tcp|udp ADDR COUNT [--threads] [--fork] [--fork-each]");
        return ExitCode::from(2);
    }
    let addr: SocketAddr = args[2].parse().expect("ADDR");
    let count: usize = args[3].parse().expect("COUNT");
    let threads = args.iter().any(|a| a == "--threads");
    match args[1].as_str() {
        "tcp" => {
            let listener = tcp_listener(addr);
            if args.iter().any(|a| a == "--fork") {
                daemonize();
            }
            println!("ready {}", listener.local_addr().unwrap().port());
            if threads {
                let acceptor = thread::Builder::new().name("acceptor".into());
                let listener = acceptor
                    .spawn(move || {
                        let mut workers = Vec::new();
                        for i in 0..count {
                            let (stream, _) = listener.accept().expect("accept");
                            let w = thread::Builder::new().name(format!("worker-{i}"));
                            let mut stream = stream;
                            workers.push(w.spawn(move || serve(&mut stream)).unwrap());
                        }
                        for w in workers {
                            w.join().unwrap();
                        }
                        listener
                    })
                    .unwrap()
                    .join()
                    .unwrap();
                drop(listener);
            } else if args.iter().any(|a| a == "--fork-each") {
                for _ in 0..count {
                    let (mut stream, _) = listener.accept().expect("accept");
                    // The child serves once the parent has let its copy go (EOF here),
                    // so that it is the last holder however the two are scheduled.
                    let (mut parent_done, done) = std::io::pipe().expect("pipe");
                    // SAFETY: single-threaded; the child only serves and exits.
                    match unsafe { nix::unistd::fork() }.expect("fork") {
                        nix::unistd::ForkResult::Child => {
                            drop(done);
                            parent_done.read_to_end(&mut Vec::new()).expect("pipe");
                            serve(&mut stream);
                            // Exit still holding `stream`: the kernel releases it.
                            std::process::exit(0);
                        }
                        nix::unistd::ForkResult::Parent { .. } => {
                            drop(stream);
                            drop(done);
                        }
                    }
                }
                for _ in 0..count {
                    nix::sys::wait::wait().expect("wait");
                }
                drop(listener);
            } else {
                for _ in 0..count {
                    let (mut stream, _) = listener.accept().expect("accept");
                    serve(&mut stream);
                }
                drop(listener);
            }
        }
        "udp" => {
            let sock = UdpSocket::bind(addr).expect("bind");
            println!("ready {}", sock.local_addr().unwrap().port());
            let mut buf = vec![0u8; 1 << 16];
            for _ in 0..count {
                let (n, peer) = sock.recv_from(&mut buf).expect("recv_from");
                sock.send_to(&buf[..n], peer).expect("send_to");
            }
            drop(sock);
        }
        other => {
            eprintln!("echo_server: unknown protocol {other}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
