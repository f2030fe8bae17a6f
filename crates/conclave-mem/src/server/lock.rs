//! `LOCK`: queue until granted, then hand out the segment (smdish) or the
//! keys of the sealed host file (smuf). See [`crate::proto::lock`].

use super::{ClientConn, Content, MemServer, Waiter};
use crate::grant::Mode;
use crate::proto::lock::{Reply, Request};
use crate::segment_seal::smuf_grant_key;
use bytes::Bytes;
use conclave_rpc::{Frame, Status};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;

pub(super) async fn handle(srv: &MemServer, conn: &mut ClientConn, body: &[u8]) -> Result<Frame, Status> {
    let req = Request::decode(body)?;
    let open = conn.handle(req.handle)?;
    let (name, writable) = (open.key.clone(), open.mode == Mode::Rw);
    let me = (conn.id, req.handle);
    let lease = srv.limits.lease;
    let wait = {
        let mut st = srv.state();
        let f = st.files.get_mut(&name).ok_or(Status::EBADF)?;
        f.expire(&name, lease);
        if f.holder == Some(me) {
            return Err(Status::EDEADLK);
        }
        if f.holder.is_none() && f.waiters.is_empty() {
            f.grant(me, lease);
            None
        } else {
            let (tx, rx) = oneshot::channel();
            f.waiters.push_back(Waiter { who: me, grant: tx });
            Some(rx)
        }
    };
    if let Some(mut rx) = wait {
        let limit = async {
            match req.timeout_ms {
                0 => std::future::pending::<()>().await,
                ms => tokio::time::sleep(Duration::from_millis(ms as u64)).await,
            }
        };
        tokio::pin!(limit);
        // Waiters enforce the holder's lease: when it runs out, the lease is
        // broken and the lock handed on, so a holder that never unlocks
        // (hung, or hostile) stalls the others for one lease at most.
        let failure = loop {
            let lease_end = {
                let st = srv.state();
                let f = st.files.get(&name).ok_or(Status::EBADF)?;
                match f.holder {
                    // Someone else holds it: its lease is the next deadline.
                    Some(h) if h != me => tokio::time::Instant::from_std(f.lease_until),
                    // Granted to us (the reply is on its way) or momentarily
                    // free: only `rx` can fire next.
                    _ => tokio::time::Instant::now() + Duration::from_secs(3600),
                }
            };
            tokio::select! {
                r = &mut rx => break if r.is_ok() { None } else { Some(Status::EBADF) },
                _ = &mut limit => break Some(Status::ETIMEDOUT),
                _ = srv.shutdown.wait() => break Some(Status::EBUSY),
                _ = tokio::time::sleep_until(lease_end) => {
                    let mut st = srv.state();
                    let f = st.files.get_mut(&name).ok_or(Status::EBADF)?;
                    f.expire(&name, lease);
                    // A lease renewed meanwhile: wait for its new end.
                }
            }
        };
        if let Some(status) = failure {
            let mut st = srv.state();
            let f = st.files.get_mut(&name).ok_or(Status::EBADF)?;
            // Granted while we were giving up: keep it.
            if f.holder != Some(me) {
                f.waiters.retain(|w| w.who != me);
                return Err(status);
            }
        }
    }
    let granted = {
        let mut st = srv.state();
        let f = st.files.get_mut(&name).ok_or(Status::EBADF)?;
        let (uid, version) = (f.uid, f.version);
        match &mut f.content {
            Content::Dish(d) => Ok(Reply::Dish {
                version,
                data: Bytes::copy_from_slice(d),
            }),
            Content::Uf {
                key_grant,
                tag,
                write_grant,
            } => {
                // A reader gets no write key: it could seal a host file no
                // one may install, and its publish is refused anyway.
                if writable {
                    *write_grant = srv.next_grant.fetch_add(1, Ordering::Relaxed);
                }
                Err((uid, version, *key_grant, *tag, writable.then_some(*write_grant)))
            }
        }
    };
    let reply = match granted {
        Ok(r) => r,
        Err((uid, version, key_grant, tag, write_grant)) => {
            let read_key = if version == 0 {
                [0; 32]
            } else {
                *smuf_grant_key(&srv.master, uid, key_grant)
            };
            Reply::Uf {
                version,
                read_key,
                tag,
                write_key: write_grant.map_or([0; 32], |g| *smuf_grant_key(&srv.master, uid, g)),
            }
        }
    };
    Ok(Frame::ok(reply.encode()))
}
