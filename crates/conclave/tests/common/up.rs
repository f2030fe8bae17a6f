//! Starting `conclave up` in a test and reading what it reports.
#![allow(dead_code)]

use super::{conclave, Proc};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdout, Stdio};

/// One process `conclave up` started, from its line
/// `started NAME (pid P)[ as uid U gid G], log FILE`.
#[derive(Clone, Debug)]
pub struct UpProcess {
    pub name: String,
    pub pid: u32,
    /// (uid, gid) when it runs as its own user (`--users`).
    pub ids: Option<(u32, u32)>,
}

/// A running `conclave up` once it said it is up.
pub struct Up {
    pub proc: Proc,
    pub procs: Vec<UpProcess>,
    /// Its standard output, kept open so `up` never writes to a closed pipe.
    pub out: BufReader<ChildStdout>,
}

/// Starts `conclave up ARGS DEPLOY` and reads its lines until it is up.
pub fn start(args: &[&str], deploy: &Path) -> Up {
    let mut child = conclave()
        .arg("up")
        .args(args)
        .arg(deploy)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let proc = Proc::new(child);
    let mut procs = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "conclave up ended before it was up"
        );
        if let Some(p) = parse_started(&line) {
            procs.push(p);
        }
        if line.contains("is up") {
            break;
        }
    }
    Up { proc, procs, out }
}

fn parse_started(line: &str) -> Option<UpProcess> {
    let (name, rest) = line.strip_prefix("started ")?.split_once(" (pid ")?;
    let (pid, rest) = rest.split_once(')').unwrap();
    let ids = rest.strip_prefix(" as uid ").map(|r| {
        let w: Vec<&str> = r.split_whitespace().collect();
        assert_eq!(w.get(1), Some(&"gid"), "{line}");
        (w[0].parse().unwrap(), w[2].trim_end_matches(',').parse().unwrap())
    });
    Some(UpProcess {
        name: name.to_string(),
        pid: pid.parse().unwrap(),
        ids,
    })
}
