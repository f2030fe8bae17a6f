//! A started process that is stopped when the test ends, however it ends.

use crate::cmd::signal;
use crate::wait::wait_until;
use std::ops::{Deref, DerefMut};
use std::process::Child;
use std::time::Duration;

/// How a [`Proc`] is stopped on drop.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL the child.
    Kill,
    /// SIGTERM `pid` (so it can clean up, as in production), SIGKILL it if the
    /// child has not exited within `grace`.
    Term { pid: u32, grace: Duration },
    /// SIGKILL the child's whole process group (a master and its workers).
    Group,
}

/// A child process stopped and reaped on drop, so a failing test leaves no
/// process behind. Derefs to the [`Child`].
pub struct Proc {
    child: Option<Child>,
    stop: Stop,
}

impl Proc {
    /// Stopped with SIGKILL.
    pub fn new(child: Child) -> Proc {
        Proc {
            child: Some(child),
            stop: Stop::Kill,
        }
    }

    /// Stopped with SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn graceful(child: Child, grace: Duration) -> Proc {
        let pid = child.id();
        Proc {
            child: Some(child),
            stop: Stop::Term { pid, grace },
        }
    }

    /// Stopped by SIGKILL to its process group (start it with `process_group(0)`).
    pub fn group(child: Child) -> Proc {
        Proc {
            child: Some(child),
            stop: Stop::Group,
        }
    }

    /// Stops by signalling `pid` instead of the child (the traced program when
    /// the child is `strace`): SIGTERM, SIGKILL after `grace`, then the child.
    pub fn stop_via(&mut self, pid: u32, grace: Duration) {
        self.stop = Stop::Term { pid, grace };
    }

    /// The child, no longer stopped on drop (the test stops it itself).
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("a Proc always holds its child")
    }

    fn child_ref(&self) -> &Child {
        self.child.as_ref().expect("a Proc always holds its child")
    }
}

impl Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child_ref()
    }
}

impl DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("a Proc always holds its child")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        match self.stop {
            Stop::Kill => {}
            Stop::Term { pid, grace } => {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                signal(pid.into(), "TERM");
                if wait_until(grace, || matches!(child.try_wait(), Ok(Some(_)))) {
                    return;
                }
                if pid != child.id() {
                    signal(pid.into(), "KILL");
                }
            }
            Stop::Group => {
                signal(-i64::from(child.id()), "KILL");
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_dropped_proc_is_stopped_and_reaped() {
        for make in [Proc::new as fn(Child) -> Proc, |c| {
            Proc::graceful(c, Duration::from_secs(5))
        }] {
            let p = make(Command::new("sleep").arg("60").spawn().unwrap());
            let pid = p.id();
            drop(p);
            assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        }
    }
}
