//! SIGINT, SIGTERM and SIGHUP: recorded by the handler, taken by the poll loop.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The last SIGINT, SIGTERM or SIGHUP received (0: none), and whether a terminal sent it.
pub(super) static SIGNAL: AtomicI32 = AtomicI32::new(0);
static FROM_TERMINAL: AtomicBool = AtomicBool::new(false);
/// Whether any of them came during the run: an end then waits little for a reader.
pub(super) static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(
    sig: nix::libc::c_int,
    info: *mut nix::libc::siginfo_t,
    _: *mut nix::libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    FROM_TERMINAL.store(code == nix::libc::SI_KERNEL, Ordering::Relaxed);
    SIGNAL.store(sig, Ordering::Relaxed);
    SIGNALLED.store(true, Ordering::Relaxed);
}

extern "C" fn on_child(_: nix::libc::c_int) {}

/// SIGINT, SIGTERM and SIGHUP are recorded; without SA_RESTART they, and SIGCHLD,
/// also cut the poll short.
pub fn handle_signals() -> Result<()> {
    let action = SigAction::new(
        SigHandler::SigAction(on_signal),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    let child = SigAction::new(
        SigHandler::Handler(on_child),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handlers only store to atomics.
    unsafe {
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            sigaction(sig, &action).context("installing signal handlers")?;
        }
        sigaction(Signal::SIGCHLD, &child).context("installing signal handlers")?;
    }
    Ok(())
}

/// A signal received since the last call, and whether a terminal sent it (to the
/// whole foreground process group, COMMAND included).
pub(super) fn take_signal() -> Option<(Signal, bool)> {
    let sig = SIGNAL.swap(0, Ordering::Relaxed);
    let sig = Signal::try_from(sig).ok()?;
    Some((sig, FROM_TERMINAL.load(Ordering::Relaxed)))
}
