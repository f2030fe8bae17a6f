//! CPU time per process class over one load: what each protection costs in
//! CPU, whatever else shares the machine. The servers are sampled by
//! process group (each runs in its own, with its workers), the load
//! generator is this process (it does nothing else while a load runs).

use conclave_bench::cpu::{self, GroupSample};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The kinds of process a cell runs, as reported in `cpu_us_per_req_<class>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessClass {
    /// The edge: its master and every worker (nginx's too).
    Edge,
    /// The key server.
    Keyserver,
    /// The file server.
    Fileserver,
    /// The memory server.
    Memserver,
    /// The origin (shared by every cell; after warm-up it serves nothing).
    Origin,
    /// The load generator: the eval process's own threads.
    Loadgen,
}

impl ProcessClass {
    /// Every class, in report order.
    pub const ALL: [ProcessClass; 6] = [
        ProcessClass::Edge,
        ProcessClass::Keyserver,
        ProcessClass::Fileserver,
        ProcessClass::Memserver,
        ProcessClass::Origin,
        ProcessClass::Loadgen,
    ];

    /// The name in column names and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessClass::Edge => "edge",
            ProcessClass::Keyserver => "keyserver",
            ProcessClass::Fileserver => "fileserver",
            ProcessClass::Memserver => "memserver",
            ProcessClass::Origin => "origin",
            ProcessClass::Loadgen => "loadgen",
        }
    }

    /// Whether the class serves requests (counts in the servers' total);
    /// the load generator stands for the clients, which a real deployment
    /// does not pay for.
    pub fn is_server(self) -> bool {
        self != ProcessClass::Loadgen
    }
}

/// CPU µs per completed request, per class; `None` for a class the cell
/// does not run (an empty cell in the report, not 0). Serialised as the
/// `cpu_us_per_req_*` fields of a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuPerRequest {
    /// Edge master and workers.
    #[serde(rename = "cpu_us_per_req_edge", default)]
    pub edge: Option<f64>,
    /// Key server.
    #[serde(rename = "cpu_us_per_req_keyserver", default)]
    pub keyserver: Option<f64>,
    /// File server.
    #[serde(rename = "cpu_us_per_req_fileserver", default)]
    pub fileserver: Option<f64>,
    /// Memory server.
    #[serde(rename = "cpu_us_per_req_memserver", default)]
    pub memserver: Option<f64>,
    /// Origin.
    #[serde(rename = "cpu_us_per_req_origin", default)]
    pub origin: Option<f64>,
    /// Load generator.
    #[serde(rename = "cpu_us_per_req_loadgen", default)]
    pub loadgen: Option<f64>,
    /// Every server class together (not the load generator): the
    /// machine-independent cost of a request, so requests/s per core ≈
    /// 1e6 / total.
    #[serde(rename = "cpu_us_per_req_total", default)]
    pub total: Option<f64>,
}

impl CpuPerRequest {
    /// The value of one class.
    pub fn get(&self, class: ProcessClass) -> Option<f64> {
        match class {
            ProcessClass::Edge => self.edge,
            ProcessClass::Keyserver => self.keyserver,
            ProcessClass::Fileserver => self.fileserver,
            ProcessClass::Memserver => self.memserver,
            ProcessClass::Origin => self.origin,
            ProcessClass::Loadgen => self.loadgen,
        }
    }

    fn slot(&mut self, class: ProcessClass) -> &mut Option<f64> {
        match class {
            ProcessClass::Edge => &mut self.edge,
            ProcessClass::Keyserver => &mut self.keyserver,
            ProcessClass::Fileserver => &mut self.fileserver,
            ProcessClass::Memserver => &mut self.memserver,
            ProcessClass::Origin => &mut self.origin,
            ProcessClass::Loadgen => &mut self.loadgen,
        }
    }

    /// Per-request values from CPU times per class over `requests`
    /// completed requests; `None` everywhere when none completed.
    pub fn from_times(times: &[(ProcessClass, Duration)], requests: u64) -> CpuPerRequest {
        let mut out = CpuPerRequest::default();
        if requests == 0 {
            return out;
        }
        let mut total = None;
        for &(class, t) in times {
            let us = t.as_secs_f64() * 1e6 / requests as f64;
            *out.slot(class) = Some(out.get(class).unwrap_or(0.0) + us);
            if class.is_server() {
                total = Some(total.unwrap_or(0.0) + us);
            }
        }
        out.total = total;
        out
    }
}

/// The processes to account for: each server's process group, by class.
#[derive(Clone, Debug, Default)]
pub struct CpuMeter {
    groups: Vec<(ProcessClass, u32)>,
}

/// A meter's reading at one instant.
#[derive(Clone, Debug)]
pub struct CpuReading {
    groups: Vec<(ProcessClass, GroupSample)>,
    this: Duration,
}

impl CpuMeter {
    /// Measures these process groups (`(class, pgid)`) and this process.
    pub fn new(groups: impl IntoIterator<Item = (ProcessClass, u32)>) -> CpuMeter {
        CpuMeter {
            groups: groups.into_iter().collect(),
        }
    }

    /// The reading before a load: the groups, then this process last, so
    /// the pass over `/proc` is not charged to the load generator.
    pub fn start(&self) -> CpuReading {
        let groups = self.sample_groups();
        CpuReading {
            groups,
            this: cpu::self_cpu().unwrap_or_default(),
        }
    }

    /// The reading after a load: this process first, then the groups.
    pub fn finish(&self) -> CpuReading {
        let this = cpu::self_cpu().unwrap_or_default();
        CpuReading {
            groups: self.sample_groups(),
            this,
        }
    }

    fn sample_groups(&self) -> Vec<(ProcessClass, GroupSample)> {
        let pgids: Vec<u32> = self.groups.iter().map(|&(_, g)| g).collect();
        let classes = self.groups.iter().map(|&(c, _)| c);
        classes.zip(GroupSample::take_all(&pgids)).collect()
    }
}

impl CpuReading {
    /// CPU time per class from `self` (before a load) to `later` (after
    /// it), one entry per class present; the load generator is this
    /// process's own threads (its children, the servers, are not in it).
    pub fn until(&self, later: &CpuReading) -> Vec<(ProcessClass, Duration)> {
        let mut out: Vec<(ProcessClass, Duration)> = Vec::new();
        for ((class, a), (_, b)) in self.groups.iter().zip(&later.groups) {
            let t = a.until(b);
            match out.iter_mut().find(|(c, _)| c == class) {
                Some((_, sum)) => *sum += t,
                None => out.push((*class, t)),
            }
        }
        out.push((ProcessClass::Loadgen, later.this.saturating_sub(self.this)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_request_values_leave_absent_classes_empty_and_total_the_servers() {
        let ms = Duration::from_millis;
        let c = CpuPerRequest::from_times(
            &[
                (ProcessClass::Edge, ms(400)),
                (ProcessClass::Keyserver, ms(250)),
                (ProcessClass::Edge, ms(100)),
                (ProcessClass::Loadgen, ms(300)),
            ],
            1000,
        );
        assert_eq!(c.edge, Some(500.0));
        assert_eq!(c.keyserver, Some(250.0));
        assert_eq!(c.loadgen, Some(300.0));
        assert_eq!((c.fileserver, c.memserver, c.origin), (None, None, None));
        assert_eq!(c.total, Some(750.0));
        assert_eq!(
            CpuPerRequest::from_times(&[(ProcessClass::Edge, ms(1))], 0),
            CpuPerRequest::default()
        );
    }

    #[test]
    fn serialises_as_the_cpu_us_per_req_fields() {
        let c = CpuPerRequest {
            edge: Some(1.5),
            total: Some(1.5),
            ..CpuPerRequest::default()
        };
        let v = serde_json::to_value(c).unwrap();
        assert_eq!(v["cpu_us_per_req_edge"], 1.5);
        assert_eq!(v["cpu_us_per_req_total"], 1.5);
        assert!(v["cpu_us_per_req_keyserver"].is_null());
        let back: CpuPerRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        // Rows written before these columns existed read back empty.
        let old: CpuPerRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(old, CpuPerRequest::default());
    }

    /// Real `/proc`: a server group burning CPU and this process's own
    /// threads (the load generator) are each counted in their class.
    #[test]
    fn meters_a_real_process_group_and_this_process() {
        use std::os::unix::process::CommandExt;
        let mut server = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .unwrap();
        let meter = CpuMeter::new([(ProcessClass::Edge, server.id())]);
        let before = meter.start();
        // Burn 200 ms of this process's CPU in a thread, as a load would.
        std::thread::spawn(|| {
            let t0 = cpu::thread_cpu().unwrap();
            while cpu::thread_cpu().unwrap() - t0 < Duration::from_millis(200) {
                std::hint::black_box(std::time::Instant::now());
            }
        })
        .join()
        .unwrap();
        let after = meter.finish();
        let _ = server.kill();
        let _ = server.wait();
        let t = before.until(&after);
        let get = |c| t.iter().find(|(k, _)| *k == c).map(|(_, d)| *d);
        assert!(
            get(ProcessClass::Loadgen).unwrap() >= Duration::from_millis(200),
            "{t:?}"
        );
        assert!(get(ProcessClass::Edge).unwrap() > Duration::ZERO, "{t:?}");
        assert_eq!(get(ProcessClass::Keyserver), None);
    }
}
