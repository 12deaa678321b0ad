//! One TCP connection ended a chosen way, for CLOSE's health words.
//!
//! usage: tcp_ends listen ADDR read|linger0|unread BYTES
//!        tcp_ends connect ADDR BYTES [--user-timeout MS] [--hold-before FILE]
//!                 [--hold-after FILE] [--close-at-once]
//!
//! `listen` prints `port N`, accepts one connection and ends it: `read` reads BYTES,
//! answers one byte and closes once the client has (after 5 s of silence, at once);
//! `linger0` reads BYTES and closes with SO_LINGER 0 (a reset); `unread` waits
//! until BYTES have arrived and closes without reading them (a reset too).
//! `connect` prints `local ADDR:PORT`, sends BYTES, reads until the answer byte,
//! end of stream or an error (printed as `read: ...`), then closes. --user-timeout
//! sets TCP_USER_TIMEOUT; --hold-before and --hold-after wait (at most 60 s) for
//! FILE to exist before sending and before closing, printing `holding`.
//! --close-at-once takes a send buffer that holds all BYTES (SO_SNDBUFFORCE: as
//! root) and closes as soon as they are handed to the kernel, without waiting
//! for the answer: the kernel sends them after the close.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::socket::{recv, setsockopt, sockopt, MsgFlags};
use std::os::fd::AsRawFd;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["listen", addr, mode, bytes] => listen(addr, mode, parse(bytes)),
        ["connect", addr, bytes, ref rest @ ..] => connect(addr, parse(bytes), rest),
        _ => Err("usage: tcp_ends listen ADDR read|linger0|unread BYTES | connect ADDR BYTES [--user-timeout MS] [--hold-before FILE] [--hold-after FILE] [--close-at-once]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp_ends: {e}");
            ExitCode::from(2)
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn parse(n: &str) -> usize {
    n.parse().expect("a number")
}

fn listen(addr: &str, mode: &str, bytes: usize) -> Result<()> {
    let listener = TcpListener::bind(addr)?;
    println!("port {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let (mut conn, _) = listener.accept()?;
    drop(listener);
    let mut buf = vec![0u8; bytes];
    match mode {
        "read" => {
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            if conn.read_exact(&mut buf).is_ok() {
                conn.write_all(b"!")?;
                // Until the client's FIN, its reset, or silence.
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            }
        }
        "linger0" => {
            conn.read_exact(&mut buf)?;
            setsockopt(
                &conn,
                sockopt::Linger,
                &nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            )?;
        }
        "unread" => {
            // A peek reads nothing: the bytes stay unread.
            let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_WAITALL;
            let n = recv(conn.as_raw_fd(), &mut buf, flags)?;
            if n != bytes {
                return Err(format!("peeked {n} of {bytes} bytes").into());
            }
        }
        _ => return Err(format!("unknown mode {mode}").into()),
    }
    Ok(())
}

fn connect(addr: &str, bytes: usize, rest: &[&str]) -> Result<()> {
    let option = |name: &str| {
        rest.iter()
            .position(|a| *a == name)
            .map(|i| rest[i + 1].to_string())
    };
    let mut conn = TcpStream::connect(addr)?;
    println!("local {}", conn.local_addr()?);
    std::io::stdout().flush()?;
    if let Some(ms) = option("--user-timeout") {
        setsockopt(&conn, sockopt::TcpUserTimeout, &ms.parse()?)?;
    }
    if let Some(file) = option("--hold-before") {
        hold(Path::new(&file))?;
    }
    let at_once = rest.contains(&"--close-at-once");
    if at_once {
        setsockopt(&conn, sockopt::SndBufForce, &(2 * bytes))?;
    }
    conn.write_all(&vec![b'x'; bytes])?;
    if at_once {
        return Ok(());
    }
    let mut answer = [0u8; 1];
    match conn.read(&mut answer) {
        Ok(_) => {}
        Err(e) => println!("read: {}", e.kind()),
    }
    if let Some(file) = option("--hold-after") {
        hold(Path::new(&file))?;
    }
    Ok(())
}

fn hold(file: &Path) -> Result<()> {
    println!("holding");
    std::io::stdout().flush()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !file.exists() {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "hold").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
