//! A process whose threads all exit at once, holding a socket through several
//! descriptors: for the exit walk, which two exiting threads can both take for the
//! process's last.
//!
//! usage: exit_threads THREADS DUPS
//!
//! Binds a UDP socket on 127.0.0.1, sends itself one byte and reads it back, dups
//! its descriptor DUPS times, starts THREADS threads that spin, and exits the
//! process from the main thread (exit_group), so every thread exits together.

use std::net::UdpSocket;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [threads, dups] = args[..] else {
        eprintln!("usage: exit_threads THREADS DUPS");
        return ExitCode::from(2);
    };
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.send_to(b"x", s.local_addr().unwrap()).expect("send");
    s.recv(&mut [0u8; 1]).expect("recv");
    for _ in 0..dups {
        // Kept open until the exit: the walk finds every one.
        std::mem::forget(nix::unistd::dup(&s).expect("dup"));
    }
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..threads {
        let running = running.clone();
        std::thread::spawn(move || {
            running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            loop {
                std::hint::spin_loop();
            }
        });
    }
    while running.load(std::sync::atomic::Ordering::SeqCst) < threads {
        std::thread::yield_now();
    }
    std::process::exit(0)
}
