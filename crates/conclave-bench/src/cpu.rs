//! The one reader of CPU time: user + system time of a process, of a
//! process group, or of the calling thread. CPU time is what a benchmark
//! row would cost on an idle machine, whatever the load from other
//! processes.
//!
//! A process's own time comes from its CPU-time clock (`clock_gettime` on
//! `clock_getcpuclockid(pid)`: every thread, live or exited, to the
//! nanosecond); `/proc/<pid>/stat` gives what the clock does not: the
//! process group, the start time, and the time of the children it has
//! waited for (in 10 ms ticks).

use nix::time::{clock_getcpuclockid, clock_gettime, ClockId};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::time::Duration;

/// Linux reports `stat` times in USER_HZ clock ticks, 100 per second (an
/// ABI constant, whatever the kernel's own HZ).
const TICKS_PER_SEC: u64 = 100;

/// The fields of `/proc/<pid>/stat` that CPU accounting needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Process group (field 5).
    pub pgrp: u32,
    /// User ticks of every thread, live and exited (field 14).
    pub utime: u64,
    /// System ticks of every thread (field 15).
    pub stime: u64,
    /// User ticks of the children this process has waited for (field 16).
    pub cutime: u64,
    /// System ticks of the waited-for children (field 17).
    pub cstime: u64,
    /// Start time after boot, in ticks (field 22): with the pid, it names
    /// one process even when pids are reused.
    pub starttime: u64,
}

impl ProcStat {
    /// Parses the text of a `stat` file. The command name (field 2) is
    /// parenthesised and may hold spaces and `)`, so fields are counted
    /// from the last `)`: after it, state is the first.
    pub fn parse(stat: &str) -> Option<ProcStat> {
        let (_, rest) = stat.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i)?.parse::<u64>().ok();
        Some(ProcStat {
            pgrp: u32::try_from(n(2)?).ok()?,
            utime: n(11)?,
            stime: n(12)?,
            cutime: n(13)?,
            cstime: n(14)?,
            starttime: n(19)?,
        })
    }

    /// Reads `/proc/<pid>/stat`; `None` if the process is gone.
    pub fn read(pid: u32) -> Option<ProcStat> {
        ProcStat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// User + system time of the process's own threads.
    pub fn own(&self) -> Duration {
        ticks(self.utime + self.stime)
    }

    /// Its own time plus that of every child it has waited for (whose own
    /// reaped children are included in turn).
    pub fn with_children(&self) -> Duration {
        self.own() + self.children()
    }

    /// The time of the children it has waited for.
    pub fn children(&self) -> Duration {
        ticks(self.cutime + self.cstime)
    }
}

fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * (1000 / TICKS_PER_SEC))
}

fn clock(id: ClockId) -> Option<Duration> {
    clock_gettime(id).ok().map(Duration::from)
}

/// User + system CPU time of process `pid` (all its threads, exited ones
/// included), `None` if it cannot be read (no such process).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let pid = i32::try_from(pid).ok()?;
    clock(clock_getcpuclockid(Pid::from_raw(pid)).ok()?)
}

/// User + system CPU time of this process (all its threads).
pub fn self_cpu() -> Option<Duration> {
    clock(ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

/// User + system CPU time of the calling thread only: a single-threaded
/// measurement loop then ignores the process's other threads.
pub fn thread_cpu() -> Option<Duration> {
    clock(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

/// `utime + stime` from the text of a `stat` file.
pub fn parse_stat(stat: &str) -> Option<Duration> {
    ProcStat::parse(stat).map(|s| s.own())
}

/// The members of one process group at one instant, each with its CPU time
/// including its waited-for children.
///
/// A group's CPU between two samples is the sum over the members of the
/// second minus the sum over the members of the first. That is exact even
/// when members come and go, as long as each member that exits is waited
/// for by another member (an edge master restarting a worker, nginx's
/// master reaping its workers): an exited member's time moves into its
/// parent's `cutime`, so it is counted once; a member that started in
/// between counts from zero. Only a member reaped by a process outside the
/// group (the group leader itself) takes its time with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSample {
    /// (pid, starttime) → CPU time with waited-for children.
    members: HashMap<(u32, u64), Duration>,
}

impl GroupSample {
    /// Samples every process whose process group is `pgid` (one pass over
    /// `/proc`). A group with no member gives an empty sample.
    pub fn take(pgid: u32) -> GroupSample {
        GroupSample::take_all(&[pgid]).pop().unwrap_or_default()
    }

    /// Samples several groups in one pass over `/proc` (the pass costs the
    /// caller CPU: one instead of one per group), in the order given.
    pub fn take_all(pgids: &[u32]) -> Vec<GroupSample> {
        let mut out = vec![GroupSample::default(); pgids.len()];
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Some(s) = ProcStat::read(pid) else {
                continue;
            };
            let Some(i) = pgids.iter().position(|&g| g == s.pgrp) else {
                continue;
            };
            // Own time from the process's clock (ns), not stat's 10 ms ticks.
            let own = process_cpu(pid).unwrap_or_else(|| s.own());
            out[i].members.insert((pid, s.starttime), own + s.children());
        }
        out
    }

    /// Processes in the group when sampled.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the group had no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sum over the members.
    pub fn total(&self) -> Duration {
        self.members.values().sum()
    }

    /// The group's CPU time from `self` (earlier) to `later`; zero if the
    /// sums went down (a member reaped from outside the group).
    pub fn until(&self, later: &GroupSample) -> Duration {
        later.total().saturating_sub(self.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burn(d: Duration) {
        let t = std::time::Instant::now();
        while t.elapsed() < d {
            std::hint::black_box(t.elapsed());
        }
    }

    #[test]
    fn parses_the_accounting_fields_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4240 4242 0 -1 4194560 100 0 0 0 150 25 7 3 20 0 1 0 987654 0";
        let s = ProcStat::parse(stat).unwrap();
        assert_eq!(
            s,
            ProcStat {
                pgrp: 4240,
                utime: 150,
                stime: 25,
                cutime: 7,
                cstime: 3,
                starttime: 987654,
            }
        );
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(1750)));
        assert_eq!(s.with_children(), Duration::from_millis(1850));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(
            ProcStat::parse("1 (x) S 1 -5 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5"),
            None
        );
    }

    #[test]
    fn reads_this_process_and_thread() {
        burn(Duration::from_millis(30));
        assert!(self_cpu().is_some());
        assert!(thread_cpu().is_some());
        assert!(process_cpu(std::process::id()).is_some());
        assert!(process_cpu(u32::MAX).is_none());
    }

    /// Real `/proc`: CPU burnt in another thread shows in this process's
    /// time. The thread burns until its own clock says 200 ms, so a busy
    /// machine makes the test slower, not flaky.
    #[test]
    fn counts_cpu_burnt_in_another_thread() {
        let before = self_cpu().unwrap();
        let burnt = std::thread::spawn(|| {
            let t0 = thread_cpu().unwrap();
            while thread_cpu().unwrap() - t0 < Duration::from_millis(200) {
                burn(Duration::from_millis(1));
            }
            thread_cpu().unwrap() - t0
        })
        .join()
        .unwrap();
        let spent = self_cpu().unwrap() - before;
        assert!(burnt >= Duration::from_millis(200), "{burnt:?}");
        assert!(spent >= burnt, "process {spent:?} < its thread {burnt:?}");
    }

    /// Real `/proc`: a child that burns CPU and exits, waited for by a
    /// member of the group, is counted once, through its parent's cutime.
    #[test]
    fn a_group_keeps_the_time_of_a_member_that_exited_and_was_reaped() {
        use std::os::unix::process::CommandExt;
        // sh (the group leader) runs a CPU-bound child, waits for it, then
        // becomes `sleep` until killed: the child's time is in its cutime
        // (and the child's own time is counted in ticks, once).
        let mut leader = std::process::Command::new("sh")
            .args([
                "-c",
                "sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; echo done; exec sleep 30",
            ])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        let before = GroupSample::take(pgid);
        assert!(!before.is_empty());
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(leader.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "done\n");
        let after = GroupSample::take(pgid);
        let _ = leader.kill();
        let _ = leader.wait();
        // Only the leader (now `sleep`) is left, yet the spin's time is there.
        assert_eq!(after.len(), 1, "{after:?}");
        let spent = before.until(&after);
        // A fixed amount of work (≈ 0.2 s of CPU here), however busy the machine.
        assert!(spent >= Duration::from_millis(50), "{spent:?}");
        assert!(spent <= Duration::from_secs(5), "{spent:?}");
    }
}
