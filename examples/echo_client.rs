//! An echo client: sends messages of the given sizes and reads each echo back.
//!
//! usage: echo_client tcp|udp|udp-unconnected|udp-msg ADDR SIZE... [--name NAME]
//!        [--sendfile] [--vectored] [--peek] [--repeat N]
//!
//! Prints `local ADDR:PORT` (its own end) once it has a port, then for each SIZE
//! sends SIZE bytes and waits for the same number back. TCP closes when done.
//! `udp` connects its socket; `udp-unconnected` uses sendto/recvfrom, `udp-msg`
//! sendmsg/recvmsg with the peer in the message header. --name first
//! renames the process (prctl PR_SET_NAME), to test hostile names. --sendfile (TCP)
//! sends each message from a temporary file with sendfile(2); --vectored (TCP)
//! uses writev/readv with each message in two halves; --peek (TCP) peeks at each
//! echo (MSG_PEEK) before reading it. --repeat N goes
//! through the SIZE list N times (a bounded load). --disconnect (connected UDP)
//! dissolves the association at the end (connect with AF_UNSPEC). --idle-socket
//! first opens a TCP socket and closes it unused, as resolvers do.

use std::io::{IoSlice, IoSliceMut, Read, Seek, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The new name may be any bytes; everything else is ASCII.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    if let Some(i) = flag("--name") {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(raw[i + 1].as_bytes()).expect("NAME");
        nix::sys::prctl::set_name(&name).expect("prctl");
    }
    let sendfile = flag("--sendfile").is_some();
    let vectored = flag("--vectored").is_some();
    let peek = flag("--peek").is_some();
    if flag("--idle-socket").is_some() {
        drop(std::net::TcpListener::from(
            nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Stream,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                None,
            )
            .expect("socket"),
        ));
    }
    let repeat: usize = flag("--repeat").map_or(1, |i| args[i + 1].parse().expect("N"));
    let rest: Vec<&String> = {
        let skip: Vec<usize> = ["--name", "--repeat"]
            .iter()
            .filter_map(|opt| flag(opt))
            .flat_map(|i| [i, i + 1])
            .collect();
        args.iter()
            .enumerate()
            .filter(|(i, a)| !skip.contains(i) && !a.starts_with("--"))
            .map(|(_, a)| a)
            .collect()
    };
    if rest.len() < 3 {
        eprintln!(
            "usage: echo_client tcp|udp|udp-unconnected|udp-msg ADDR SIZE... [--name NAME] [--sendfile] [--vectored] [--peek] [--repeat N] [--disconnect] [--idle-socket]"
        );
        return ExitCode::from(2);
    }
    let addr: SocketAddr = rest[2].parse().expect("ADDR");
    let once: Vec<usize> = rest[3..].iter().map(|s| s.parse().expect("SIZE")).collect();
    let sizes = once.repeat(repeat);
    let unspecified: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap();
    match rest[1].as_str() {
        "tcp" => {
            let mut s = TcpStream::connect(addr).expect("connect");
            println!("local {}", s.local_addr().unwrap());
            for &n in &sizes {
                let msg = vec![b'x'; n];
                if sendfile {
                    let mut f = tempfile();
                    f.write_all(&msg).unwrap();
                    f.rewind().unwrap();
                    let sent = nix::sys::sendfile::sendfile(s.as_fd(), f.as_fd(), None, n)
                        .expect("sendfile");
                    assert_eq!(sent, n, "short sendfile");
                } else if vectored {
                    let (a, b) = msg.split_at(n / 2);
                    let sent = s
                        .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                        .expect("writev");
                    assert_eq!(sent, n, "short writev");
                } else {
                    s.write_all(&msg).expect("send");
                }
                let mut back = vec![0u8; n];
                if peek {
                    let mut first = [0u8; 1];
                    s.peek(&mut first).expect("peek");
                }
                if vectored {
                    let (a, b) = back.split_at_mut(n / 2);
                    let got = s
                        .read_vectored(&mut [IoSliceMut::new(a), IoSliceMut::new(b)])
                        .expect("readv");
                    assert_eq!(got, n, "short readv");
                } else {
                    s.read_exact(&mut back).expect("recv");
                }
            }
        }
        "udp-msg" => {
            use nix::sys::socket::{recvmsg, sendmsg, MsgFlags, SockaddrStorage};
            let s = UdpSocket::bind(unspecified).expect("bind");
            println!("local {}", s.local_addr().unwrap());
            let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
            let peer = SockaddrStorage::from(addr);
            for &n in &sizes {
                let msg = vec![b'x'; n];
                sendmsg(
                    fd,
                    &[IoSlice::new(&msg)],
                    &[],
                    MsgFlags::empty(),
                    Some(&peer),
                )
                .expect("sendmsg");
                let mut back = vec![0u8; n + 1];
                let mut iov = [IoSliceMut::new(&mut back)];
                let got = recvmsg::<SockaddrStorage>(fd, &mut iov, None, MsgFlags::empty())
                    .expect("recvmsg");
                assert_eq!(got.bytes, n, "short echo");
                assert_eq!(got.address, Some(peer), "echo from elsewhere");
            }
        }
        "udp" | "udp-unconnected" => {
            let s = UdpSocket::bind(unspecified).expect("bind");
            println!("local {}", s.local_addr().unwrap());
            let connected = rest[1] == "udp";
            if connected {
                s.connect(addr).expect("connect");
            }
            for &n in &sizes {
                let msg = vec![b'x'; n];
                let mut back = vec![0u8; n + 1];
                let got = if connected {
                    s.send(&msg).expect("send");
                    s.recv(&mut back).expect("recv")
                } else {
                    s.send_to(&msg, addr).expect("sendto");
                    s.recv_from(&mut back).expect("recvfrom").0
                };
                assert_eq!(got, n, "short echo");
            }
            if connected && flag("--disconnect").is_some() {
                let unspec = nix::libc::sockaddr {
                    sa_family: nix::libc::AF_UNSPEC as nix::libc::sa_family_t,
                    sa_data: [0; 14],
                };
                let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
                let len = std::mem::size_of_val(&unspec) as nix::libc::socklen_t;
                // SAFETY: a valid sockaddr of the given length, on a socket we own.
                let rc = unsafe { nix::libc::connect(fd, &unspec, len) };
                assert_eq!(rc, 0, "disconnect: {}", std::io::Error::last_os_error());
            }
        }
        other => {
            eprintln!("echo_client: unknown protocol {other}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// An unlinked temporary file.
fn tempfile() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("echo_client.{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("temp file");
    std::fs::remove_file(&path).unwrap();
    f
}
