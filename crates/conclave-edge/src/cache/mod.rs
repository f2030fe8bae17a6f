//! Cache mode: the proxy cache in front of an origin (nginx `proxy_cache`).
//!
//! The index lives in a shared segment (`keys_zone`), bodies in `Storage` files
//! named by the key hash; small hot bodies are mirrored in worker memory and
//! checked against the index version on every hit. Concurrent misses for one key
//! share one origin fetch (single-flight within a worker).

use crate::config::CacheConfig;
use crate::entity::{content_type_for, respond, Body, Entity};
use crate::proxy::{headers, Proxy};
use crate::shared::{SharedSegment, SharedState};
use crate::storage::Storage;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

pub mod file;
pub mod index;

use index::{Index, KeyHash, Lookup, Policy};

/// Largest origin body the edge accepts (bigger -> 502).
const MAX_ORIGIN_BODY: usize = 256 << 20;

/// Headers of an origin response NOT kept in the cache: per response
/// (`Date`, `Content-Length`, set on every answer), per client (`Set-Cookie`,
/// a stored response never carries one), or added again on each answer (`Via`).
const NOT_KEPT: [&str; 5] = ["date", "content-length", "set-cookie", "via", "age"];

/// Client conditionals and ranges are answered by the edge from the whole
/// entity, never passed to the origin on a cache fetch (NGINX does the same).
const NOT_FORWARDED: [HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

fn cache_status(s: &'static str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_static("x-cache-status"),
        HeaderValue::from_static(s),
    ))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The result of one origin fetch, shared by the requests that waited for it.
#[derive(Debug)]
struct Fetched {
    status: StatusCode,
    entity: Arc<Entity>,
    /// The origin's end-to-end headers, sent as they are when the answer is not a cacheable 200.
    headers: http::HeaderMap,
    /// Safe to hand to other clients (no Set-Cookie / private).
    shareable: bool,
}

/// One site's cache.
pub struct Cache {
    cfg: CacheConfig,
    policy: Policy,
    proxy: Arc<Proxy>,
    storage: Arc<dyn Storage>,
    zone: Arc<dyn SharedSegment>,
    inflight: Mutex<HashMap<KeyHash, Arc<OnceCell<Arc<Fetched>>>>>,
    mem: Mutex<MemMirror>,
}

#[derive(Default)]
struct MemMirror {
    map: HashMap<KeyHash, (u64, Arc<Entity>)>,
    bytes: u64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("cfg", &self.cfg)
            .field("upstream", &self.proxy.upstream)
            .finish()
    }
}

/// A cache setup failure.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The zone could not be opened.
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
}

impl Cache {
    /// A cache storing under `storage`, indexing in `shared`'s zone, fetching through `proxy`.
    pub fn new(
        cfg: CacheConfig,
        proxy: Arc<Proxy>,
        storage: Arc<dyn Storage>,
        shared: &dyn SharedState,
    ) -> Result<Cache, CacheError> {
        let zone = shared.open(&cfg.zone_name, cfg.zone_size)?;
        let policy = Policy {
            valid_ms: cfg.valid.as_millis() as u64,
            inactive_ms: cfg.inactive.as_millis() as u64,
            max_size: cfg.max_size,
            min_uses: cfg.min_uses,
        };
        Ok(Cache {
            cfg,
            policy,
            proxy,
            storage,
            zone,
            inflight: Mutex::new(HashMap::new()),
            mem: Mutex::new(MemMirror::default()),
        })
    }

    /// Runs `f` on the index under the zone's lock. `f` may run twice (see
    /// [`SharedSegment::with_locked`]): the result of the last run is returned.
    fn with_index<R>(&self, mut f: impl FnMut(&mut Index<'_>) -> R) -> Option<R> {
        let mut out = None;
        let r = self.zone.with_locked(&mut |seg| {
            let mut ix = Index::open(seg);
            out = Some(f(&mut ix));
            ix.changed()
        });
        match r {
            Ok(()) => out,
            // Past a memory-server deadline: served as a miss without an
            // index update (the seam logs these once per interval).
            Err(crate::shared::SharedError::Unavailable { .. }) => None,
            Err(e) => {
                tracing::error!("cache zone {}: {e}", self.cfg.zone_name);
                None
            }
        }
    }

    fn file_name(hash: &KeyHash) -> String {
        let h = hex::encode(hash);
        format!("{}/{}/{}", &h[30..], &h[28..30], h)
    }

    fn forget_files(&self, evicted: &[KeyHash]) {
        if evicted.is_empty() {
            return;
        }
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        for k in evicted {
            if let Some((_, e)) = mem.map.remove(k) {
                mem.bytes -= e.body.len() as u64;
            }
            if let Err(e) = self.storage.remove(&Self::file_name(k)) {
                tracing::warn!("cache: removing an evicted file: {e}");
            }
        }
    }

    fn remember(&self, hash: KeyHash, version: u64, e: Arc<Entity>) {
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        let len = e.body.len() as u64;
        if len > (1 << 20) {
            return;
        }
        // Bounded like the disk cache; entries evicted by other workers age out here.
        if mem.bytes + len > self.cfg.max_size.max(1 << 20) {
            mem.map.clear();
            mem.bytes = 0;
        }
        if let Some((_, old)) = mem.map.insert(hash, (version, e)) {
            mem.bytes -= old.body.len() as u64;
        }
        mem.bytes += len;
    }

    /// Reads a stored generation: from memory, else from storage.
    fn load(&self, key: &str, hash: &KeyHash, version: u64) -> Option<Arc<Entity>> {
        {
            let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((v, e)) = mem.map.get(hash) {
                if *v == version {
                    return Some(e.clone());
                }
            }
        }
        let name = Self::file_name(hash);
        let data = match self.storage.read_all(&name) {
            Ok((_, d)) => d,
            Err(e) => {
                // A failed or late (`storage_timeout`) read: served as a miss.
                crate::refusals::STORAGE.note(format_args!("cache: reading {name} (served as a miss): {e}"));
                return None;
            }
        };
        let file = match file::decode(key, data) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cache: {name}: {e}");
                return None;
            }
        };
        let e = Arc::new(entity_from_headers(key, &file.headers, file.body));
        self.remember(*hash, version, e.clone());
        Some(e)
    }

    /// The lookup on a shared snapshot of the index when the zone gives one
    /// (memory servers) and the lookup changes nothing there (a hit whose
    /// last use is fresh): no lock, no blocked thread, and one round trip
    /// for all the requests that arrived meanwhile. `None`: do it under the lock.
    async fn lookup_on_snapshot(&self, hash: &KeyHash, now: u64) -> Option<Lookup> {
        let snap = match self.zone.snapshot()?.await {
            Ok(s) => s?,
            // Counted and logged by the seam; the lookup falls back to the lock.
            Err(crate::shared::SharedError::Unavailable { .. }) => return None,
            Err(e) => {
                tracing::warn!("cache zone {}: snapshot: {e}", self.cfg.zone_name);
                return None;
            }
        };
        let mut copy = snap.bytes.clone();
        let mut ix = Index::open(&mut copy);
        let mut evicted = Vec::new();
        let l = ix.lookup(hash, now, &self.policy, &mut evicted);
        (!ix.changed()).then_some(l)
    }

    /// The way to the origin (for the requests a site passes through uncached).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Answers a GET/HEAD from `peer` from the cache or the origin.
    pub async fn handle(&self, req: &http::request::Parts, peer: std::net::SocketAddr) -> Response<Body> {
        let method = &req.method;
        let req_headers = &req.headers;
        let key = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let hash: KeyHash = {
            let d = Sha256::digest(key.as_bytes());
            let mut h = [0u8; 16];
            h.copy_from_slice(&d[..16]);
            h
        };
        let now = now_ms();
        let looked = match self.lookup_on_snapshot(&hash, now).await {
            Some(l) => Some((l, Vec::new())),
            None => self.with_index(|ix| {
                let mut evicted = Vec::new();
                (ix.lookup(&hash, now, &self.policy, &mut evicted), evicted)
            }),
        };
        let looked = looked.map(|(l, evicted)| {
            self.forget_files(&evicted);
            l
        });
        let (label, store) = match looked {
            Some(Lookup::Hit { version }) => {
                if let Some(e) = self.load(key, &hash, version) {
                    return respond(method, req_headers, &e, cache_status("HIT"));
                }
                self.with_index(|ix| ix.remove(&hash));
                ("MISS", true)
            }
            Some(Lookup::Expired) => ("EXPIRED", true),
            Some(Lookup::Miss { store }) => ("MISS", store),
            None => ("MISS", false),
        };
        // Built on a miss only: a hit costs no header copy.
        let mut to_origin = headers::to_origin(req, peer, &self.proxy.headers);
        for h in &NOT_FORWARDED {
            to_origin.remove(h);
        }
        let (fetched, mine) = self.fetch_once(key, hash, store, &to_origin).await;
        // A private answer fetched for another client is not ours to see.
        let f = if fetched.shareable || mine {
            fetched
        } else {
            self.fetch(key, hash, store, &to_origin).await
        };
        if f.status == StatusCode::OK && f.shareable {
            respond(method, req_headers, &f.entity, cache_status(label))
        } else {
            // Anything else passes through as the origin sent it.
            let body = if method == Method::HEAD {
                crate::entity::empty()
            } else {
                crate::entity::full(f.entity.body.clone())
            };
            let mut r = Response::new(body);
            *r.status_mut() = f.status;
            *r.headers_mut() = f.headers.clone();
            r.headers_mut().insert(header::DATE, crate::entity::date_now());
            if let Some((k, v)) = cache_status(label) {
                r.headers_mut().insert(k, v);
            }
            r
        }
    }

    /// Single-flight: one fetch per key at a time; the others wait for its result.
    async fn fetch_once(
        &self,
        key: &str,
        hash: KeyHash,
        store: bool,
        to_origin: &http::HeaderMap,
    ) -> (Arc<Fetched>, bool) {
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight
                .entry(hash)
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let mut mine = false;
        let f = cell
            .get_or_init(|| {
                mine = true;
                self.fetch(key, hash, store, to_origin)
            })
            .await
            .clone();
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.get(&hash).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&hash);
        }
        (f, mine)
    }

    async fn fetch(
        &self,
        key: &str,
        hash: KeyHash,
        store: bool,
        to_origin: &http::HeaderMap,
    ) -> Arc<Fetched> {
        match self.fetch_origin(key, to_origin).await {
            Ok((status, headers, body)) => {
                let cacheable = status == StatusCode::OK && is_cacheable(&headers);
                let kept: Vec<(String, String)> = headers
                    .iter()
                    .filter(|(k, _)| !NOT_KEPT.contains(&k.as_str()))
                    .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                    .collect();
                let shareable =
                    !headers.contains_key(header::SET_COOKIE) && !cc_has(&headers, &["private", "no-store"]);
                let entity = Arc::new(entity_from_headers(key, &kept, body.clone()));
                if cacheable && store {
                    self.store(key, hash, &kept, &body, entity.clone());
                }
                let mut headers = headers;
                headers.remove(header::CONTENT_LENGTH);
                Arc::new(Fetched {
                    status,
                    entity,
                    headers,
                    shareable,
                })
            }
            Err(e) => {
                let err = crate::proxy::error_response(&e);
                let status = err.status();
                let body = Bytes::from(format!(
                    "{} {}\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ));
                let entity = Entity {
                    body,
                    content_type: HeaderValue::from_static("text/plain"),
                    etag: None,
                    last_modified: None,
                    extra: Vec::new(),
                };
                let mut headers = http::HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                Arc::new(Fetched {
                    status,
                    entity: Arc::new(entity),
                    headers,
                    shareable: true,
                })
            }
        }
    }

    fn store(&self, key: &str, hash: KeyHash, kept: &[(String, String)], body: &Bytes, e: Arc<Entity>) {
        if body.len() as u64 > self.policy.max_size {
            return;
        }
        let name = Self::file_name(&hash);
        if let Err(err) = self.storage.write_atomic(&name, &file::encode(key, kept, body)) {
            tracing::error!("cache: writing {name}: {err}");
            return;
        }
        let now = now_ms();
        let (v, evicted) = self
            .with_index(|ix| {
                let mut evicted = Vec::new();
                (
                    ix.commit(&hash, body.len() as u64, now, &self.policy, &mut evicted),
                    evicted,
                )
            })
            .unwrap_or_default();
        self.forget_files(&evicted);
        match v {
            Some(v) => self.remember(hash, v, e),
            None => {
                let _ = self.storage.remove(&name);
            }
        }
    }

    async fn fetch_origin(
        &self,
        key: &str,
        to_origin: &http::HeaderMap,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), crate::proxy::UpstreamError> {
        let mut req = Request::new(crate::proxy::empty_body());
        *req.uri_mut() = key.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
        *req.headers_mut() = to_origin.clone();
        let resp = self.proxy.upstream.send(req).await?;
        let (mut parts, body) = resp.into_parts();
        headers::from_origin(&mut parts.headers);
        let body = Limited::new(body, MAX_ORIGIN_BODY)
            .collect()
            .await
            .map_err(|e| match e.downcast::<crate::proxy::UpstreamError>() {
                Ok(u) => *u,
                Err(other) => crate::proxy::UpstreamError::Broken {
                    server: self.proxy.upstream.name().to_string(),
                    source: other,
                },
            })?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

fn cc_has(h: &http::HeaderMap, words: &[&str]) -> bool {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .map(|d| d.trim().split('=').next().unwrap_or("").to_ascii_lowercase())
                .any(|d| words.contains(&d.as_str()))
        })
}

/// Whether an origin 200 may be stored (nginx: no Set-Cookie, not private/no-store/no-cache).
fn is_cacheable(h: &http::HeaderMap) -> bool {
    !h.contains_key(header::SET_COOKIE)
        && !cc_has(h, &["no-store", "private", "no-cache"])
        && h.get(header::VARY).is_none_or(|v| v.as_bytes() != b"*")
}

fn entity_from_headers(key: &str, headers: &[(String, String)], body: Bytes) -> Entity {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| HeaderValue::from_str(v).ok())
    };
    let path = key.split('?').next().unwrap_or(key);
    // Every stored header but the ones `Entity` has fields for goes out as it is.
    let extra = headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "content-type" | "etag" | "last-modified"))
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    Entity {
        content_type: get("content-type").unwrap_or_else(|| content_type_for(path)),
        etag: get("etag"),
        last_modified: get("last-modified")
            .and_then(|v| Some((httpdate::parse_http_date(v.to_str().ok()?).ok()?, v))),
        body,
        extra,
    }
}
