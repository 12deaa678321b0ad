//! Many unix-domain paths, one connection each: enough to fill -c's tables in the
//! kernel (4096 rows), so that what does not fit must go as events.
//!
//! usage: unix_paths N DIR
//!
//! For i in 0..N, one after the other: listens at `DIR/i.sock`, connects to it,
//! accepts, the client sends 1 byte and the server reads it, then all three are
//! closed. Prints `done N` at the end; exits 0.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(Ok(n)), Some(dir)) = (args.get(1).map(|a| a.parse::<u32>()), args.get(2)) else {
        eprintln!("usage: unix_paths N DIR");
        return ExitCode::from(2);
    };
    let dir = Path::new(dir);
    for i in 0..n {
        let path = dir.join(format!("{i}.sock"));
        let listener = UnixListener::bind(&path).expect("bind");
        let mut client = UnixStream::connect(&path).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"x").expect("send");
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).expect("recv");
        std::fs::remove_file(&path).expect("unlink");
    }
    println!("done {n}");
    ExitCode::SUCCESS
}
