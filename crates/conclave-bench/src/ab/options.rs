//! ab's command-line values checked the way ab checks them (`-H` headers,
//! seconds, concurrency against requests), and a run that stops on Ctrl-C
//! like ab and still reports what was done.

use super::{AbError, LoadReport, LoadSpec, RunControl};
use std::time::Duration;

/// Parses one `-H 'Name: value'` header.
pub fn parse_header(h: &str) -> Result<(String, String), AbError> {
    let Some((k, v)) = h.split_once(':') else {
        return Err(AbError::Usage(format!("-H {h:?}: expected 'Name: value'")));
    };
    let k = k.trim();
    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AbError::Usage(format!("-H {h:?}: bad header name")));
    }
    if v.chars().any(|c| c == '\r' || c == '\n') {
        return Err(AbError::Usage(format!(
            "-H {h:?}: line breaks are not allowed in a header value"
        )));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// `v` seconds given to `flag`, which must be a non-negative finite number.
pub fn seconds(flag: &str, v: f64) -> Result<Duration, AbError> {
    Duration::try_from_secs_f64(v)
        .map_err(|e| AbError::Usage(format!("{flag} {v}: expected a positive number of seconds: {e}")))
}

impl LoadSpec {
    /// ab refuses more requests in flight than requests in all (without a
    /// time limit).
    pub fn check(&self) -> Result<(), AbError> {
        if self.concurrency as u64 > self.requests && self.time_limit.is_none() {
            return Err(AbError::Usage(
                "cannot use concurrency level greater than total number of requests".into(),
            ));
        }
        Ok(())
    }
}

/// Runs the load; on Ctrl-C, like ab on SIGINT, stops taking new requests
/// and reports what was done.
pub async fn run_until_interrupted(spec: &LoadSpec) -> Result<LoadReport, AbError> {
    let control = RunControl::default();
    let cancel = control.cancel.clone();
    let load = super::run(spec, control);
    tokio::pin!(load);
    tokio::select! {
        r = &mut load => r,
        _ = tokio::signal::ctrl_c() => {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            load.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked_like_ab() {
        assert_eq!(
            parse_header("Accept-Encoding: gzip").unwrap(),
            ("Accept-Encoding".into(), "gzip".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(seconds("-t", -1.0).unwrap_err().to_string().contains("-t -1"));
    }
}
