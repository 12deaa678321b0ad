//! Unix-domain sockets of every kind, between this process and a forked child of
//! the same name, with byte counts a test can check.
//!
//! usage: unix_sockets DIR
//!
//! In order, each step finished before the next:
//! 1. stream: listens at `DIR/srv sock\n1` (a space and a newline in the path);
//!    the child connects, sends 11 bytes and reads them back; the server echoes
//!    them, reads the end of the stream and closes.
//! 2. seqpacket: listens at `DIR/seq.sock`; the child sends 3 packets of 100
//!    bytes, the server receives them.
//! 3. socketpair: this process sends 5 bytes to the child, which answers with 7.
//! 4. datagrams: a socket bound to the abstract name `@sockwatch-PID`
//!    receives 9 bytes from an unbound socket's sendto(), then 4 from a socket
//!    bound to `DIR/c.sock` and connected to it.
//! 5. failures: a connect to `DIR/missing` (ENOENT), and to `DIR/dead.sock`,
//!    whose listener is gone (ECONNREFUSED).
//! 6. passed descriptors: over a socketpair, the child sends 1 byte with one end
//!    of a second socketpair (SCM_RIGHTS), lets its own copy go and sends 1 byte
//!    more; this process receives both, sends 6 bytes through the received end and
//!    closes it; the child reads them.
//!
//! Prints `ready PID` first, `child PID` for each child, `done` last; exits 0.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;

use nix::sys::socket::{
    accept, bind, connect, listen, recv, recvmsg, send, sendmsg, socket, AddressFamily, Backlog,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

/// Runs `child` in a forked process (exiting 0 after it), returns its pid.
fn spawn(child: impl FnOnce()) -> Pid {
    // SAFETY: the child only runs `child` (plain syscalls) and exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            child();
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            println!("child {child}");
            child
        }
    }
}

/// Closes a descriptor this process inherited, so that the other process's close is the last.
fn close(fd: std::os::fd::RawFd) {
    // SAFETY: the descriptor is not used again in this process, which exits soon.
    assert_eq!(unsafe { nix::libc::close(fd) }, 0, "close");
}

fn reap(pid: Pid) {
    let status = waitpid(pid, None).expect("waitpid");
    assert!(
        matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

fn stream(dir: &Path) {
    let path = dir.join("srv sock\n1");
    let listener = UnixListener::bind(&path).expect("bind");
    let child = spawn(|| {
        // The listener is the parent's to close.
        close(listener.as_raw_fd());
        let mut s = UnixStream::connect(&path).expect("connect");
        s.write_all(b"hello world").expect("send");
        s.read_exact(&mut [0u8; 11]).expect("recv");
    });
    let (mut conn, _) = listener.accept().expect("accept");
    let mut buf = [0u8; 11];
    conn.read_exact(&mut buf).expect("recv");
    conn.write_all(&buf).expect("send");
    assert_eq!(conn.read(&mut buf).expect("eof"), 0);
    drop(conn);
    drop(listener);
    reap(child);
}

fn seqpacket(dir: &Path) {
    let path = dir.join("seq.sock");
    let addr = UnixAddr::new(&path).expect("addr");
    let listener: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    bind(listener.as_raw_fd(), &addr).expect("bind");
    listen(&listener, Backlog::new(8).unwrap()).expect("listen");
    let child = spawn(|| {
        close(listener.as_raw_fd());
        let s: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        connect(s.as_raw_fd(), &addr).expect("connect");
        for _ in 0..3 {
            assert_eq!(
                send(s.as_raw_fd(), &[7u8; 100], MsgFlags::empty()).expect("send"),
                100
            );
        }
    });
    // SAFETY: accept returns a new descriptor this function owns.
    let conn = unsafe {
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(
            accept(listener.as_raw_fd()).expect("accept"),
        )
    };
    let mut buf = [0u8; 200];
    for _ in 0..3 {
        assert_eq!(
            recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv"),
            100
        );
    }
    reap(child);
}

fn socketpair() {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let child = spawn(|| {
        close(a.as_raw_fd());
        b.read_exact(&mut [0u8; 5]).expect("recv");
        b.write_all(b"seven!!").expect("send");
    });
    drop(b);
    a.write_all(b"five!").expect("send");
    a.read_exact(&mut [0u8; 7]).expect("recv");
    reap(child);
}

fn datagrams(dir: &Path) {
    let name = format!("sockwatch-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let server = UnixDatagram::bind_addr(&addr).expect("bind");
    let unbound = UnixDatagram::unbound().expect("socket");
    assert_eq!(
        unbound.send_to_addr(b"ninebytes", &addr).expect("sendto"),
        9
    );
    let mut buf = [0u8; 64];
    assert_eq!(server.recv_from(&mut buf).expect("recv").0, 9);
    let client = UnixDatagram::bind(dir.join("c.sock")).expect("bind");
    client.connect_addr(&addr).expect("connect");
    assert_eq!(client.send(b"four").expect("send"), 4);
    assert_eq!(server.recv_from(&mut buf).expect("recv").0, 4);
}

fn failures(dir: &Path) {
    let err = UnixStream::connect(dir.join("missing")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::ENOENT));
    let dead = dir.join("dead.sock");
    drop(UnixListener::bind(&dead).expect("bind"));
    let err = UnixStream::connect(&dead).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::ECONNREFUSED));
}

fn rights() {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let child = spawn(|| {
        close(a.as_raw_fd());
        let (p, mut q) = UnixStream::pair().expect("socketpair");
        let fds = [p.as_raw_fd()];
        let sent = sendmsg::<()>(
            b.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        assert_eq!(sent, 1);
        // Let go of this copy before the other process uses the socket, and say so.
        drop(p);
        (&b).write_all(b"y").expect("send");
        q.read_exact(&mut [0u8; 6]).expect("recv");
    });
    drop(b);
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let msg = recvmsg::<()>(a.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty())
        .expect("recvmsg");
    let received: Vec<std::os::fd::RawFd> = msg
        .cmsgs()
        .expect("cmsgs")
        .flat_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds,
            _ => vec![],
        })
        .collect();
    assert_eq!(received.len(), 1);
    (&a).read_exact(&mut [0u8; 1]).expect("recv");
    // SAFETY: the kernel just installed this descriptor for this process.
    let mut p = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(received[0]) };
    p.write_all(b"six!!!").expect("send");
    drop(p);
    reap(child);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 {
        eprintln!("usage: unix_sockets DIR");
        return ExitCode::from(2);
    }
    let dir = Path::new(&args[1]);
    // A run before this one left its socket files.
    for file in ["srv sock\n1", "seq.sock", "c.sock", "dead.sock"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    println!("ready {}", std::process::id());
    stream(dir);
    seqpacket(dir);
    socketpair();
    datagrams(dir);
    failures(dir);
    rights();
    println!("done");
    ExitCode::SUCCESS
}
