//! Stock NGINX (Debian's package) as the tests run it: found where Debian
//! puts it, configured from one shared preamble, started in a process group
//! of its own so that dropping it stops the master *and* its workers (a
//! SIGKILL to the master alone leaves the workers holding the ports).

use super::Proc;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The nginx binary, if the package is installed.
pub fn path() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Panics with the package to install when nginx (and `tools`) are missing:
/// a test never passes silently without its peer.
pub fn require(tools: &[&str]) {
    let missing: Vec<&str> = std::iter::once("nginx")
        .filter(|_| path().is_none())
        .chain(tools.iter().copied().filter(|t| !super::on_path(t)))
        .collect();
    let package = |t: &str| {
        match t {
            "ab" => "apache2-utils",
            "debugfs" => "e2fsprogs",
            other => other,
        }
        .to_string()
    };
    assert!(
        missing.is_empty(),
        "this test needs {}: apt-get install {}",
        missing.join(", "),
        missing.iter().map(|t| package(t)).collect::<Vec<_>>().join(" ")
    );
}

/// The top of every test config: `user root;` when the tests run as root
/// (nginx would switch its workers to `nobody`, who cannot read the temp
/// dirs), no daemon, `workers` workers, pid and error log in `dir`, and the
/// `http` block's temp paths in `dir` (the `http {` is left open).
pub fn preamble(dir: &Path, workers: usize) -> String {
    let user = if is_root() { "user root;" } else { "" };
    let d = dir.display();
    format!(
        "{user}\ndaemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/tmp_body;\n proxy_temp_path {d}/tmp_proxy;\n\
         fastcgi_temp_path {d}/tmp_fcgi;\n uwsgi_temp_path {d}/tmp_uwsgi;\n scgi_temp_path {d}/tmp_scgi;\n"
    )
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `nginx -p DIR -c CONF -e DIR/error.log` in a process group of its own,
/// stdin closed; the caller adds environment or output files.
pub fn command(dir: &Path, conf: &Path) -> Command {
    let mut cmd = Command::new(path().expect("nginx is installed (nginx::require)"));
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

/// Spawns `cmd` (from [`command`], or a tracer in front of it started with
/// `process_group(0)`) and returns it once every port in `ports` accepts
/// connections; panics with nginx's error log if one never does.
pub fn started(mut cmd: Command, dir: &Path, ports: &[u16]) -> Proc {
    let g = Proc::group(cmd.spawn().expect("nginx starts"));
    for &port in ports {
        let up = super::wait_until(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "nginx did not listen on {port}: {:?}",
            std::fs::read_to_string(dir.join("error.log"))
        );
    }
    g
}

/// Writes `conf` to `DIR/nginx.conf` and starts nginx with it ([`started`]).
pub fn start(dir: &Path, conf: &str, ports: &[u16]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    started(command(dir, &file), dir, ports)
}
