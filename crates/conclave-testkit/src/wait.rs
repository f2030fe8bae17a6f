//! Waiting on a condition with a deadline, instead of sleeping and hoping.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds or `limit` has passed; whether it held. The
/// caller asserts (with its own message), so a slow machine waits longer
/// rather than failing, and a broken one fails at the deadline.
pub fn wait_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_until(limit, POLL, cond)
}

/// [`wait_until`] polling every `every`, for a condition whose check acts
/// (a slow client that sends a byte per check).
pub fn poll_until(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if let Some(held) = settled(&mut cond, until) {
            return held;
        }
        std::thread::sleep(every);
    }
}

/// One poll: `Some(true)` once `cond` holds, `Some(false)` past `until`, else `None`.
fn settled(cond: &mut impl FnMut() -> bool, until: Instant) -> Option<bool> {
    if cond() {
        Some(true)
    } else if Instant::now() >= until {
        Some(false)
    } else {
        None
    }
}

/// [`wait_until`] for async tests: polls without blocking the runtime.
pub async fn wait_until_async(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if let Some(held) = settled(&mut cond, until) {
            return held;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for `child` to exit; fails the test if it is still running after `limit`
/// (a hang is the bug, not a timing).
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap_or_else(|| panic!("process {} did not exit within {limit:?}", child.id()))
}

/// Runs `f` on its own thread and returns its result; fails the test if it
/// has not returned within `limit`. Bounds a call that would hang (deadlock)
/// if the behaviour under test were broken, so the test fails instead of hanging.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the call did not return within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the call panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_sees_a_condition_and_gives_up_at_the_deadline() {
        let start = Instant::now();
        assert!(wait_until(Duration::from_secs(5), || start.elapsed()
            > Duration::from_millis(50)));
        assert!(!wait_until(Duration::from_millis(50), || false));
    }

    #[test]
    fn within_returns_the_value_and_fails_a_hang() {
        assert_eq!(within(Duration::from_secs(5), || 7), 7);
        let hung = std::panic::catch_unwind(|| {
            within(Duration::from_millis(50), || {
                std::thread::sleep(Duration::from_secs(2))
            })
        });
        assert!(hung.is_err());
    }
}
