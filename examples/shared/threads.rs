//! What the examples that park many threads in one call share.

use std::time::{Duration, Instant};

/// Threads of this process sleeping in a syscall, other than the main one.
fn blocked_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| t.file_name() != std::process::id().to_string().as_str())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('S')))
                .unwrap_or(false)
        })
        .count()
}

/// Waits (a minute at most) until `n` threads sleep in a syscall, and a moment
/// more: a thread can show as sleeping just before it reaches the call.
pub fn wait_until_blocked(n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while blocked_threads() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
}
