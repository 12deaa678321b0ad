//! A process that only makes system calls: N getppid() calls, timed.
//!
//! usage: getppid_loop N
//!
//! Prints `ns_per_call X`. Nothing here touches a socket, so a tracer that costs
//! this process anything costs every process on the machine.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let Some(Ok(n)) = std::env::args().nth(1).map(|a| a.parse::<u32>()) else {
        eprintln!("usage: getppid_loop N");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(nix::unistd::getppid());
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n.max(1));
    println!("ns_per_call {ns:.1}");
    ExitCode::SUCCESS
}
