//! The RPC micro-benchmark, after the original librpc `rpcbench`: a client
//! downloads and uploads payloads of several sizes over tcp and unix, with
//! and without TLS, and we report the time per RPC and the throughput.
//!
//! Server and client run in one process (server on a tokio runtime, client a
//! blocking thread, as the original's `rpccombinedbench`), so the figures
//! measure the transport, not process scheduling across machines. Each
//! transport is measured with every server connection mode asked for
//! (`reactor`: a task per connection; `threads`: a thread per connection),
//! one after the other, so the modes compare within one run.

use crate::error::failed;
use crate::harness::{Meter, Scratch};
use crate::BenchError;
use conclave_rpc::Role;
use conclave_rpc::{
    BodyReader, BodyWriter, ClientOptions, Connection, ConnectionMode, Credentials, Endpoint, Frame,
    PeerInfo, Server, ServerOptions, Service, Shutdown, Status,
};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Request opcode: the client sends N bytes, the reply is empty.
pub const UPLOAD: u32 = 0;
/// Request opcode: body is a `u32` N, the reply carries N bytes.
pub const DOWNLOAD: u32 = 1;

/// Largest payload the benchmark moves.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// The benchmark's service.
struct BenchService {
    payload: bytes::Bytes,
}

impl Service for BenchService {
    type Conn = ();
    fn open(&self, _peer: &PeerInfo) -> Result<(), Status> {
        Ok(())
    }
    async fn call(&self, _c: &mut (), req: Frame) -> Frame {
        match req.code {
            UPLOAD => Frame::ok(bytes::Bytes::new()),
            DOWNLOAD => {
                let mut r = BodyReader::new(&req.body);
                match r.u32() {
                    Ok(n) if (n as usize) <= self.payload.len() => {
                        Frame::ok(self.payload.slice(..n as usize))
                    }
                    Ok(_) => Frame::error(Status::E2BIG),
                    Err(st) => Frame::error(st),
                }
            }
            _ => Frame::error(Status::ENOSYS),
        }
    }
}

/// Transport of one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP on 127.0.0.1.
    Tcp,
    /// A UNIX stream socket.
    Unix,
    /// The floor, not an RPC: a blocking echo thread on a UNIX socketpair
    /// answering the same bytes (8-byte header plus payload) with no runtime,
    /// no framing code and no TLS. Two threads handing a message back and
    /// forth cannot beat it on this machine (the two wake-ups and context
    /// switches of a round trip), so the RPC cells read as a margin over it.
    Socketpair,
}

/// Direction of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Server to client.
    Download,
    /// Client to server.
    Upload,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RpcBenchConfig {
    /// Payload sizes in bytes.
    pub sizes: Vec<usize>,
    /// Time spent measuring each cell.
    pub duration: Duration,
    /// Cap on RPCs per cell.
    pub max_rpcs: u64,
    /// Certificates for the TLS cells (`conclave certs` output). `None`
    /// skips the TLS cells, and the report says so.
    pub certs: Option<PathBuf>,
    /// Server connection modes measured for every transport.
    pub connections: Vec<ConnectionMode>,
}

/// One measured cell.
#[derive(Clone, Debug, Serialize)]
pub struct RpcResult {
    /// tcp or unix.
    pub transport: Transport,
    /// Mutual TLS on.
    pub tls: bool,
    /// The server's connection mode (`reactor` or `threads`; `-` for the
    /// socketpair floor, which has no server loop).
    pub server: &'static str,
    /// download or upload.
    pub op: Op,
    /// Payload bytes per RPC.
    pub payload: usize,
    /// RPCs measured.
    pub rpcs: u64,
    /// Mean time per RPC, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Payload throughput, MB/s (10^6 bytes).
    pub mb_per_s: f64,
}

/// Runs every cell and returns the results in order.
pub fn run(cfg: &RpcBenchConfig, mut progress: impl FnMut(&RpcResult)) -> Result<Vec<RpcResult>, BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(failed("tokio runtime"))?;
    let payload = bytes::Bytes::from((0..MAX_PAYLOAD).map(|i| i as u8).collect::<Vec<u8>>());
    let sockdir = Scratch::new(&std::env::temp_dir(), "rpc").map_err(failed("temp dir"))?;
    let mut out = Vec::new();
    let tls_modes: &[bool] = if cfg.certs.is_some() {
        &[false, true]
    } else {
        &[false]
    };
    for &transport in &[Transport::Unix, Transport::Tcp] {
        for &tls in tls_modes {
            let ep = match transport {
                Transport::Tcp => Endpoint::Tcp("127.0.0.1:0".into()),
                Transport::Unix | Transport::Socketpair => {
                    Endpoint::Unix(sockdir.path().join(format!("bench-{tls}.sock")))
                }
            };
            let (server_tls, client) = match (&cfg.certs, tls) {
                (Some(dir), true) => {
                    let s =
                        Credentials::from_dir(dir, Role::FileServer).map_err(failed("server identity"))?;
                    let c = Credentials::from_dir(dir, Role::Edge).map_err(failed("client identity"))?;
                    (
                        Some(s.server_config().map_err(failed("server TLS"))?),
                        ClientOptions::mtls(&c, Role::FileServer).map_err(failed("client TLS"))?,
                    )
                }
                _ => (None, ClientOptions::plain()),
            };
            for &mode in &cfg.connections {
                let cells = Cells { transport, tls, mode };
                let rows = cells.run(
                    &rt,
                    &ep,
                    server_tls.clone(),
                    &client,
                    &payload,
                    cfg,
                    &mut progress,
                )?;
                out.extend(rows);
            }
        }
    }
    for &op in &[Op::Download, Op::Upload] {
        for &size in &cfg.sizes {
            let r = floor(op, size, cfg)?;
            progress(&r);
            out.push(r);
        }
    }
    Ok(out)
}

/// The cells of one server: a transport, TLS or not, a connection mode.
struct Cells {
    transport: Transport,
    tls: bool,
    mode: ConnectionMode,
}

impl Cells {
    /// Starts the server, measures every op and size over one connection,
    /// stops the server.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        rt: &tokio::runtime::Runtime,
        ep: &Endpoint,
        server_tls: Option<Arc<rustls::ServerConfig>>,
        client: &ClientOptions,
        payload: &bytes::Bytes,
        cfg: &RpcBenchConfig,
        progress: &mut impl FnMut(&RpcResult),
    ) -> Result<Vec<RpcResult>, BenchError> {
        let opts = ServerOptions {
            max_body: (MAX_PAYLOAD + 64) as u32,
            connections: self.mode,
            ..ServerOptions::default()
        };
        let server = rt
            .block_on(Server::bind(ep, server_tls, opts))
            .map_err(failed("bind"))?;
        let ep = server.local_endpoint().clone();
        let shutdown = Shutdown::new();
        let svc = Arc::new(BenchService {
            payload: payload.clone(),
        });
        let handle = rt.spawn(server.serve(svc, shutdown.clone()));
        let mut conn = Connection::connect(&ep, client).map_err(failed("rpc failed"))?;
        let mut out = Vec::new();
        for &op in &[Op::Download, Op::Upload] {
            for &size in &cfg.sizes {
                let mut r = measure(&mut conn, self.transport, self.tls, op, size, payload, cfg)?;
                r.server = self.mode.as_str();
                progress(&r);
                out.push(r);
            }
        }
        drop(conn);
        shutdown.trigger();
        let _ = rt.block_on(handle);
        Ok(out)
    }
}

/// A [`Transport::Socketpair`] cell: the client writes the request (8-byte
/// header, plus the payload for an upload) and reads the reply (8-byte
/// header, plus the payload for a download) from a thread that echoes
/// sizes, as the RPC server would, with plain blocking reads and writes.
fn floor(op: Op, size: usize, cfg: &RpcBenchConfig) -> Result<RpcResult, BenchError> {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let (mut client, mut server) = UnixStream::pair().map_err(failed("socketpair"))?;
    let (up, down) = match op {
        Op::Download => (0, size),
        Op::Upload => (size, 0),
    };
    let echo = std::thread::Builder::new()
        .name("floor-echo".into())
        .spawn(move || {
            let mut req = vec![0u8; 8 + up];
            let reply = vec![7u8; 8 + down];
            while server.read_exact(&mut req).is_ok() {
                if server.write_all(&reply).is_err() {
                    return;
                }
            }
        })
        .map_err(failed("echo thread"))?;
    let req = vec![1u8; 8 + up];
    let mut reply = vec![0u8; 8 + down];
    let once = || -> Result<(), BenchError> {
        client.write_all(&req).map_err(failed("socketpair write"))?;
        client.read_exact(&mut reply).map_err(failed("socketpair read"))
    };
    let r = cell(Transport::Socketpair, false, op, size, cfg, once);
    drop(client);
    let _ = echo.join();
    r
}

/// One cell: `once` 20 times to warm up (buffers, TLS record sizes, caches), then
/// timed until the cell's duration or RPC cap.
fn cell(
    transport: Transport,
    tls: bool,
    op: Op,
    size: usize,
    cfg: &RpcBenchConfig,
    mut once: impl FnMut() -> Result<(), BenchError>,
) -> Result<RpcResult, BenchError> {
    for _ in 0..20 {
        once()?;
    }
    let mut m = Meter::start();
    while m.ops() < cfg.max_rpcs && m.elapsed() < cfg.duration {
        m.time(size as u64, &mut once)?;
    }
    let r = m.finish();
    Ok(RpcResult {
        transport,
        tls,
        server: "-",
        op,
        payload: size,
        rpcs: r.ops,
        mean_us: r.mean_us(),
        p50_us: r.p50_us(),
        p99_us: r.p99_us(),
        mb_per_s: r.mb_per_s(),
    })
}

fn measure(
    conn: &mut Connection,
    transport: Transport,
    tls: bool,
    op: Op,
    size: usize,
    payload: &[u8],
    cfg: &RpcBenchConfig,
) -> Result<RpcResult, BenchError> {
    let (code, body) = match op {
        Op::Download => {
            let mut w = BodyWriter::new();
            w.u32(size as u32);
            (DOWNLOAD, w.finish())
        }
        Op::Upload => (UPLOAD, payload[..size].to_vec()),
    };
    let once = || -> Result<(), BenchError> {
        let f = conn.call(code, &body).map_err(failed("rpc failed"))?;
        if f.code != 0 {
            return Err(BenchError::msg(format!("server replied {}", f.status())));
        }
        if op == Op::Download && f.body.len() != size {
            return Err(BenchError::msg(format!(
                "short download: {} of {size}",
                f.body.len()
            )));
        }
        Ok(())
    };
    cell(transport, tls, op, size, cfg, once)
}

/// Table heading, aligned with [`RpcResult::line`].
pub fn header() -> String {
    format!(
        "{:<10} {:<4} {:<7} {:<9} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "net", "tls", "server", "op", "bytes", "rpcs", "mean_us", "p50_us", "p99_us", "MB/s"
    )
}

impl RpcResult {
    /// One table line.
    pub fn line(&self) -> String {
        format!(
            "{:<10} {:<4} {:<7} {:<9} {:>8} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            format!("{:?}", self.transport).to_lowercase(),
            if self.tls { "tls" } else { "none" },
            self.server,
            format!("{:?}", self.op).to_lowercase(),
            self.payload,
            self.rpcs,
            self.mean_us,
            self.p50_us,
            self.p99_us,
            self.mb_per_s
        )
    }
}

/// Checks the payload sizes, then generates certificates for the TLS cells
/// in a temp dir (removed afterwards) when `certs` is `None`, and runs every cell.
pub fn run_with_certs(
    cfg: RpcBenchConfig,
    progress: impl FnMut(&RpcResult),
) -> Result<Vec<RpcResult>, BenchError> {
    if let Some(big) = cfg.sizes.iter().find(|&&s| s > MAX_PAYLOAD) {
        return Err(BenchError::msg(format!(
            "payload {big} exceeds the benchmark's maximum of {MAX_PAYLOAD} bytes"
        )));
    }
    // Generated certificates live in a scratch directory removed afterwards.
    let mut scratch = None;
    let certs = match cfg.certs {
        Some(d) => d,
        None => {
            let dir = Scratch::new(&std::env::temp_dir(), "rpc-certs").map_err(failed("temp dir"))?;
            let tmp = dir.path().join("certs");
            scratch = Some(dir);
            conclave_rpc::pki::generate(&conclave_rpc::pki::CertsOptions {
                tenants: Vec::new(),
                out: tmp.clone(),
                site_key: conclave_rpc::pki::SiteKey::EcdsaP256,
                force: true,
            })
            .map_err(failed("generating certificates for the TLS cells"))?;
            tmp
        }
    };
    let res = run(
        &RpcBenchConfig {
            certs: Some(certs),
            ..cfg
        },
        progress,
    );
    drop(scratch);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_cell_with_real_payloads() {
        let cfg = RpcBenchConfig {
            sizes: vec![0, 1024],
            duration: Duration::from_millis(20),
            max_rpcs: 50,
            certs: None,
            connections: vec![ConnectionMode::Reactor, ConnectionMode::Threads],
        };
        let res = run(&cfg, |_| {}).unwrap();
        assert_eq!(
            res.len(),
            (2 * 2 + 1) * 2 * 2,
            "unix/tcp × reactor/threads, and the socketpair floor × download/upload × 2 sizes"
        );
        for server in ["reactor", "threads"] {
            assert_eq!(res.iter().filter(|r| r.server == server).count(), 8, "{server}");
        }
        assert_eq!(
            res.iter()
                .filter(|r| r.transport == Transport::Socketpair)
                .count(),
            4
        );
        for r in &res {
            assert!(r.rpcs > 0 && r.rpcs <= 50);
            assert!(r.mean_us > 0.0 && r.p99_us >= r.p50_us);
        }
        assert!(res.iter().any(|r| r.payload == 1024 && r.mb_per_s > 0.0));
    }
}
