//! The one reader of CPU time: user + system time of a process or of the
//! calling thread, from `/proc/<pid>/stat`. CPU time is what a benchmark row
//! would cost on an idle machine, whatever the load from other processes.

use std::time::Duration;

/// Linux reports `utime` and `stime` in USER_HZ clock ticks, 100 per second.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU time of process `pid`, `None` if it cannot be read
/// (no such process, or no `/proc`).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    read(&format!("/proc/{pid}/stat"))
}

/// User + system CPU time of this process (all its threads).
pub fn self_cpu() -> Option<Duration> {
    read("/proc/self/stat")
}

/// User + system CPU time of the calling thread only: a single-threaded
/// measurement loop then ignores the process's other threads.
pub fn thread_cpu() -> Option<Duration> {
    read("/proc/thread-self/stat")
}

fn read(path: &str) -> Option<Duration> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// `utime + stime` from the text of a `stat` file. The command name (field
/// 2) is parenthesised and may hold spaces and `)`, so fields are counted
/// from the last `)`: after it, state is the first, utime the 12th, stime
/// the 13th.
pub fn parse_stat(stat: &str) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / TICKS_PER_SEC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 1 0";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(1750)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_this_process_and_thread() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(self_cpu().is_some());
        assert!(thread_cpu().is_some());
        assert!(process_cpu(std::process::id()).is_some());
        assert!(process_cpu(u32::MAX).is_none());
    }
}
