//! A small safe wrapper over Debian's libmodsecurity3 (via `modsecurity-sys`), used only to check
//! conclave's decisions against the real thing and to benchmark it. The only `unsafe` in the crate.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::Mutex;

use modsecurity_sys as sys;

use crate::RequestView;

extern "C" {
    fn free(p: *mut c_void);
}

/// What libmodsecurity decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModSecDecision {
    /// Whether an intervention was disruptive (the request would be refused).
    pub disruptive: bool,
    /// The intervention's status (meaningful when disruptive).
    pub status: u16,
    /// The rule id found in the intervention log (`[id "N"]`), if any.
    pub rule_id: Option<u64>,
}

/// One libmodsecurity engine with one rule set, loaded from a file.
pub struct ModSecurity {
    ms: *mut sys::ModSecurity,
    rules: *mut sys::RulesSet,
}

/// libmodsecurity's rule parser (flex/bison) keeps global state: one load at a time per process.
static LOAD_LOCK: Mutex<()> = Mutex::new(());

/// The log callback: drops messages, or collects them when the transaction was created with a
/// `Vec<String>` as its log data (see [`ModSecurity::inspect`]).
unsafe extern "C" fn quiet_log(data: *mut c_void, msg: *const c_void) {
    if data.is_null() || msg.is_null() {
        return;
    }
    // SAFETY: `inspect` passes a live `&mut Vec<String>` for the transaction's lifetime, and
    // libmodsecurity's default log property hands a NUL-terminated message.
    let log = &mut *(data as *mut Vec<String>);
    log.push(
        CStr::from_ptr(msg as *const c_char)
            .to_string_lossy()
            .into_owned(),
    );
}

/// Everything libmodsecurity reported for one request (see [`ModSecurity::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModSecReport {
    /// The decision, as [`ModSecurity::check`] gives it.
    pub decision: ModSecDecision,
    /// Ids of the rules that matched and log (`[id "N"]` of every log message), in order.
    pub logged: Vec<u64>,
    /// The log messages themselves.
    pub messages: Vec<String>,
}

/// The `[id "N"]` of a libmodsecurity log line.
fn log_rule_id(line: &str) -> Option<u64> {
    let i = line.find("[id \"")?;
    line[i + 5..].split('"').next()?.parse().ok()
}

/// Takes ownership of a C string libmodsecurity allocated with malloc.
unsafe fn take_c_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    free(p as *mut c_void);
    s
}

impl ModSecurity {
    /// Loads a rule file (with its includes) into a fresh engine.
    pub fn load(path: &Path) -> Result<ModSecurity, String> {
        let cpath = CString::new(path.to_str().ok_or("path is not UTF-8")?).map_err(|e| e.to_string())?;
        // SAFETY: msc_init/msc_create_rules_set return owned handles (freed in Drop); the path is a
        // valid C string; the error string, if set, is malloc'ed and freed by take_c_string.
        let _serialised = LOAD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        unsafe {
            let ms = sys::msc_init();
            let rules = sys::msc_create_rules_set();
            if ms.is_null() || rules.is_null() {
                return Err("libmodsecurity could not be initialised".into());
            }
            sys::msc_set_log_cb(ms, Some(quiet_log));
            let me = ModSecurity { ms, rules };
            let mut err: *const c_char = ptr::null();
            if sys::msc_rules_add_file(rules, cpath.as_ptr(), &mut err) < 0 {
                return Err(take_c_string(err));
            }
            Ok(me)
        }
    }

    /// Runs phases 1 and 2 for a request (no body), as the NGINX connector does.
    pub fn check(&self, req: &RequestView<'_>) -> Result<ModSecDecision, String> {
        self.run(req, b"", "127.0.0.1", None)
    }

    /// Runs phases 1 and 2 with a request body and a client address, collecting the log: which
    /// rules matched (those that log) besides the decision.
    pub fn inspect(
        &self,
        req: &RequestView<'_>,
        body: &[u8],
        remote_addr: &str,
    ) -> Result<ModSecReport, String> {
        let mut log: Vec<String> = Vec::new();
        let decision = self.run(req, body, remote_addr, Some(&mut log))?;
        Ok(ModSecReport {
            decision,
            logged: log.iter().filter_map(|l| log_rule_id(l)).collect(),
            messages: log,
        })
    }

    /// One transaction as the NGINX connector runs it: connection, URI, headers, body, each
    /// followed by an intervention check. With `log`, the engine's messages are collected there.
    fn run(
        &self,
        req: &RequestView<'_>,
        body: &[u8],
        remote_addr: &str,
        log: Option<&mut Vec<String>>,
    ) -> Result<ModSecDecision, String> {
        let uri = CString::new(req.uri).map_err(|_| "NUL in URI")?;
        let method = CString::new(req.method).map_err(|_| "NUL in method")?;
        let ip = CString::new(remote_addr).map_err(|_| "NUL in address")?;
        let log_data = log.map_or(ptr::null_mut(), |l| l as *mut Vec<String> as *mut c_void);
        // SAFETY: the transaction is created from our live handles and cleaned up before return;
        // all pointers passed are valid for the call (headers with explicit lengths). `log`, when
        // given, outlives the transaction, and only `quiet_log` touches it (from this thread,
        // during the msc_* calls).
        unsafe {
            let tx = sys::msc_new_transaction(self.ms, self.rules, log_data);
            if tx.is_null() {
                return Err("msc_new_transaction failed".into());
            }
            let server = c"127.0.0.1";
            sys::msc_process_connection(tx, ip.as_ptr(), 40000, server.as_ptr(), 80);
            sys::msc_process_uri(tx, uri.as_ptr(), method.as_ptr(), c"1.1".as_ptr());
            let mut d = intervention(tx);
            if d.is_none() {
                for (n, v) in req.headers {
                    sys::msc_add_n_request_header(tx, n.as_ptr(), n.len(), v.as_ptr(), v.len());
                }
                sys::msc_process_request_headers(tx);
                d = intervention(tx);
            }
            if d.is_none() {
                if !body.is_empty() {
                    sys::msc_append_request_body(tx, body.as_ptr(), body.len());
                }
                sys::msc_process_request_body(tx);
                d = intervention(tx);
            }
            sys::msc_process_logging(tx);
            sys::msc_transaction_cleanup(tx);
            Ok(d.unwrap_or(ModSecDecision {
                disruptive: false,
                status: 200,
                rule_id: None,
            }))
        }
    }
}

/// Reads (and frees) the transaction's pending intervention, if disruptive.
unsafe fn intervention(tx: *mut sys::Transaction) -> Option<ModSecDecision> {
    let mut it = sys::ModSecurityIntervention {
        status: 200,
        pause: 0,
        url: ptr::null_mut(),
        log: ptr::null_mut(),
        disruptive: 0,
    };
    sys::msc_intervention(tx, &mut it);
    let log = take_c_string(it.log);
    if !it.url.is_null() {
        free(it.url as *mut c_void);
    }
    if it.disruptive == 0 {
        return None;
    }
    let rule_id = log
        .find("[id \"")
        .and_then(|i| log[i + 5..].split('"').next())
        .and_then(|s| s.parse().ok());
    Some(ModSecDecision {
        disruptive: true,
        status: it.status as u16,
        rule_id,
    })
}

impl Drop for ModSecurity {
    fn drop(&mut self) {
        // SAFETY: both handles came from msc_* constructors and are dropped exactly once.
        unsafe {
            sys::msc_rules_cleanup(self.rules);
            sys::msc_cleanup(self.ms);
        }
    }
}
