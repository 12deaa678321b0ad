//! A busy D-Bus client: one connection to a bus, N method calls the bus daemon
//! answers itself (`org.freedesktop.DBus.GetId`), each waited for.
//!
//! usage: dbus_calls SOCKET N
//!
//! Speaks the wire protocol directly (EXTERNAL authentication, Hello, then the
//! calls), so that the daemon's work per call is all there is to measure. Prints
//! `calls N sent S received R` (every byte it wrote and read, authentication
//! included) and `ns_per_call X`; exits 1 on an error reply, and fails on no reply
//! in 10 s.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(Ok(n))) = (args.get(1), args.get(2).map(|a| a.parse::<u32>())) else {
        eprintln!("usage: dbus_calls SOCKET N");
        return ExitCode::from(2);
    };
    let stream = UnixStream::connect(path).expect("connect");
    // A daemon that never answers ends the run instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(Counted {
        inner: stream.try_clone().expect("clone"),
        bytes: 0,
    });
    let mut writer = Counted {
        inner: stream,
        bytes: 0,
    };
    authenticate(&mut reader, &mut writer);
    let mut call = |serial: u32, member: &str| -> bool {
        writer
            .write_all(&method_call(serial, member))
            .expect("send");
        // Signals (NameAcquired after Hello) may come before the reply.
        loop {
            match read_message(&mut reader) {
                METHOD_RETURN => return true,
                ERROR => return false,
                _ => {}
            }
        }
    };
    if !call(1, "Hello") {
        eprintln!("Hello failed");
        return ExitCode::FAILURE;
    }
    let start = Instant::now();
    for i in 0..n {
        if !call(i + 2, "GetId") {
            eprintln!("GetId failed");
            return ExitCode::FAILURE;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n.max(1));
    let received = reader.get_ref().bytes;
    println!("calls {n} sent {} received {received}", writer.bytes);
    println!("ns_per_call {ns:.1}");
    ExitCode::SUCCESS
}

/// A stream that counts the bytes its reads returned or its writes took.
struct Counted {
    inner: UnixStream,
    bytes: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SASL EXTERNAL as this uid, then BEGIN: the binary protocol follows.
fn authenticate(reader: &mut impl BufRead, writer: &mut impl Write) {
    let uid = nix::unistd::getuid().as_raw().to_string();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    writer
        .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
        .expect("auth");
    let mut line = String::new();
    reader.read_line(&mut line).expect("auth reply");
    assert!(line.starts_with("OK "), "authentication refused: {line:?}");
    writer.write_all(b"BEGIN\r\n").expect("begin");
}

/// A little-endian method call to the bus itself, without a body.
fn method_call(serial: u32, member: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (code, sig, value) in [
        (1u8, b'o', "/org/freedesktop/DBus"),
        (2, b's', "org.freedesktop.DBus"),
        (3, b's', member),
        (6, b's', "org.freedesktop.DBus"),
    ] {
        pad(&mut fields, 8);
        fields.extend_from_slice(&[code, 1, sig, 0]);
        fields.extend_from_slice(&(value.len() as u32).to_le_bytes());
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    let mut msg = vec![b'l', 1, 0, 1];
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.extend_from_slice(&serial.to_le_bytes());
    msg.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    msg.extend_from_slice(&fields);
    pad(&mut msg, 8);
    msg
}

fn pad(buf: &mut Vec<u8>, to: usize) {
    buf.resize(buf.len().next_multiple_of(to), 0);
}

/// Reads one whole message: its type.
fn read_message(reader: &mut impl Read) -> u8 {
    let mut fixed = [0u8; 16];
    reader.read_exact(&mut fixed).expect("message header");
    assert_eq!(fixed[0], b'l', "the daemon answered big-endian");
    let word = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().unwrap()) as u64;
    let (body, fields) = (word(4), word(12));
    let rest = fields.next_multiple_of(8) + body;
    std::io::copy(&mut reader.take(rest), &mut std::io::sink()).expect("message");
    fixed[1]
}
