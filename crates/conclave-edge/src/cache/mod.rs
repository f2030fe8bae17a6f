//! Cache mode: an RFC 9111 shared cache in front of an origin (NGINX `proxy_cache`).
//!
//! The index lives in a shared segment (`keys_zone`), bodies in `Storage` files
//! named by the key hash. The origin's headers decide what is stored and for
//! how long (`freshness`); `valid` is only the fallback. Origin bodies stream
//! to the client while they are written to storage (`tee`), and hits stream
//! from storage; small hot bodies are mirrored in worker memory and checked
//! against the index version on every hit. Concurrent misses for one key wait
//! for the first one's stored response (NGINX `proxy_cache_lock`).

use crate::config::CacheConfig;
use crate::entity::{self, respond_with, Body, Entity, EntityBody};
use crate::proxy::{headers, Proxy, UpstreamBody, UpstreamError};
use crate::shared::{SharedSegment, SharedState};
use crate::storage::Storage;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub mod file;
pub mod freshness;
pub mod index;
mod invalidate;
pub mod key;
pub mod purge;
mod tee;
pub mod vary;

use freshness::CacheControl;
use index::{Index, KeyHash, Lookup, NewEntry, Policy, Stored};

/// Headers of an origin response not kept in the cache: per response
/// (`Date`, `Content-Length`, `Age`: made again on every answer), per client
/// (`Set-Cookie`: a stored response never has one), or added by each hop (`Via`).
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

/// Bodies up to this size are read whole on a hit and mirrored in worker
/// memory; larger ones stream from storage.
pub const MEM_MAX: u64 = 1 << 20;

/// The most a worker's memory mirror holds (less when `max_size` is smaller):
/// bounded so a large cache does not grow a worker's resident memory with it.
const MEM_MIRROR_MAX: u64 = 32 << 20;

fn cache_status(s: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-cache-status"),
        HeaderValue::from_static(s),
    )
}

fn now_ms() -> u64 {
    freshness::ms(SystemTime::now())
}

fn hash_of(key: &str) -> KeyHash {
    let d = Sha256::digest(key.as_bytes());
    let mut h = [0u8; 16];
    h.copy_from_slice(&d[..16]);
    h
}

/// A stored response ready to serve: the entity and the stored headers
/// (to merge a 304 into, and to read its directives from).
#[derive(Debug)]
struct Cached {
    entity: Entity,
    headers: HeaderMap,
    cc: CacheControl,
}

impl Cached {
    /// From a cache file's head and body.
    fn new(status: u16, kept: &[(String, String)], body: EntityBody) -> Cached {
        let mut headers = HeaderMap::with_capacity(kept.len());
        for (k, v) in kept {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.append(k, v);
            }
        }
        Cached::from_headers(status, headers, body)
    }

    fn from_headers(status: u16, headers: HeaderMap, body: EntityBody) -> Cached {
        let extra = headers
            .iter()
            .filter(|(k, _)| *k != header::CONTENT_TYPE && *k != header::ETAG && *k != header::LAST_MODIFIED)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let entity = Entity {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body,
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            etag: headers.get(header::ETAG).cloned(),
            last_modified: headers
                .get(header::LAST_MODIFIED)
                .and_then(|v| Some((httpdate::parse_http_date(v.to_str().ok()?).ok()?, v.clone()))),
            extra,
        };
        let cc = CacheControl::parse(&headers);
        Cached { entity, headers, cc }
    }

    fn kept(&self) -> Vec<(String, String)> {
        kept_pairs(&self.headers)
    }
}

/// The headers of `h` a cache file keeps, as text.
fn kept_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| !NOT_KEPT.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// The stored side of a cache, shared with the bodies being written to it.
pub(crate) struct Store {
    cfg: CacheConfig,
    policy: Policy,
    storage: Arc<dyn Storage>,
    zone: Arc<dyn SharedSegment>,
    mem: Mutex<MemMirror>,
}

#[derive(Default)]
struct MemMirror {
    map: HashMap<KeyHash, (u64, Arc<Cached>)>,
    bytes: u64,
}

impl Store {
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

    fn forget(&self, hash: &KeyHash) {
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, e)) = mem.map.remove(hash) {
            mem.bytes = mem.bytes.saturating_sub(mem_len(&e));
        }
    }

    fn forget_files(&self, evicted: &[KeyHash]) {
        for k in evicted {
            self.forget(k);
            if let Err(e) = self.storage.remove(&Self::file_name(k)) {
                tracing::warn!("cache: removing an evicted file: {e}");
            }
        }
    }

    /// Removes `hash` from the index, the memory mirror and storage.
    fn remove(&self, hash: &KeyHash) {
        self.with_index(|ix| ix.remove(hash));
        self.forget_files(&[*hash]);
    }

    fn remember(&self, hash: KeyHash, version: u64, e: Arc<Cached>) {
        let len = mem_len(&e);
        if !matches!(e.entity.body, EntityBody::Memory(_)) {
            return;
        }
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded like the disk cache; entries evicted by other workers age out here.
        if mem.bytes + len > self.cfg.max_size.clamp(MEM_MAX, MEM_MIRROR_MAX) {
            mem.map.clear();
            mem.bytes = 0;
        }
        if let Some((_, old)) = mem.map.insert(hash, (version, e)) {
            mem.bytes = mem.bytes.saturating_sub(mem_len(&old));
        }
        mem.bytes += len;
    }

    /// Reads a stored generation: from memory, else from storage (whole up
    /// to [`MEM_MAX`], else its head only, the body left to stream).
    fn load(&self, key: &str, hash: &KeyHash, s: &Stored) -> Option<Arc<Cached>> {
        {
            let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((v, e)) = mem.map.get(hash) {
                if *v == s.version {
                    return Some(e.clone());
                }
            }
        }
        let name = Self::file_name(hash);
        let r = if s.size <= MEM_MAX {
            self.storage
                .read_all(&name)
                .map(|(_, d)| file::decode(key, d).map(|(h, b)| (h, EntityBody::Memory(b))))
        } else {
            self.read_head(key, &name, Some(s.size)).map(|h| {
                h.map(|h| {
                    let body = EntityBody::Stored {
                        storage: self.storage.clone(),
                        path: name.clone(),
                        offset: h.body_offset,
                        len: s.size,
                    };
                    (h, body)
                })
            })
        };
        let (head, body) = match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::warn!("cache: {name}: {e}");
                return None;
            }
            Err(e) => {
                // A failed or late (`storage_timeout`) read: served as a miss.
                crate::refusals::STORAGE.note(format_args!("cache: reading {name} (served as a miss): {e}"));
                return None;
            }
        };
        if body.len() != s.size {
            tracing::warn!(
                "cache: {name}: body of {} bytes, index says {}",
                body.len(),
                s.size
            );
            return None;
        }
        let e = Arc::new(Cached::new(head.status, &head.headers, body));
        self.remember(*hash, s.version, e.clone());
        Some(e)
    }

    /// The head of a large cache file; with `body`, also a check that the
    /// file holds exactly that many body bytes (the index's size).
    fn read_head(
        &self,
        key: &str,
        name: &str,
        body: Option<u64>,
    ) -> std::io::Result<Result<file::Head, file::CorruptCacheFile>> {
        let h = self.read_head_only(key, name)?;
        if let (Ok(head), Some(len)) = (&h, body) {
            if self.storage.stat(name)?.len != head.body_offset + len {
                return Ok(Err(file::CorruptCacheFile::new(
                    "body length differs from the index",
                )));
            }
        }
        Ok(h)
    }

    fn read_head_only(
        &self,
        key: &str,
        name: &str,
    ) -> std::io::Result<Result<file::Head, file::CorruptCacheFile>> {
        let first = self.storage.read_at(name, 0, 4096)?;
        let n = match file::head_len(&first) {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        let data = if n <= first.len() {
            first
        } else {
            self.storage.read_at(name, 0, n)?
        };
        Ok(file::decode_head(Some(key), &data))
    }

    /// Records a stored file in the index; `None` when it does not fit (the
    /// file is removed then).
    fn commit(&self, hash: KeyHash, e: NewEntry) -> Option<u64> {
        let now = now_ms();
        let (v, evicted) = self
            .with_index(|ix| {
                let mut evicted = Vec::new();
                (ix.commit(&hash, e, now, &self.policy, &mut evicted), evicted)
            })
            .unwrap_or_default();
        self.forget_files(&evicted);
        if v.is_none() {
            let _ = self.storage.remove(&Self::file_name(&hash));
        }
        v
    }

    /// Stores a small file whole (vary records, 304-refreshed heads).
    fn write_whole(&self, hash: &KeyHash, head: &[u8], body: &[u8]) -> bool {
        let mut data = Vec::with_capacity(head.len() + body.len());
        data.extend_from_slice(head);
        data.extend_from_slice(body);
        let name = Self::file_name(hash);
        match self.storage.write_atomic(&name, &data) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cache: writing {name}: {e}");
                false
            }
        }
    }
}

fn mem_len(c: &Cached) -> u64 {
    match &c.entity.body {
        EntityBody::Memory(b) => b.len() as u64,
        EntityBody::Stored { .. } => 0,
    }
}

/// The outcome single-flight followers wait for: `Some(true)` when the
/// leader's response was stored (serve it from the cache), `Some(false)` when
/// not (fetch yourself).
type FlightRx = tokio::sync::watch::Receiver<Option<bool>>;
type Flights = Arc<Mutex<HashMap<KeyHash, FlightRx>>>;

/// The leader's side of a single flight: tells the followers how it ended
/// when dropped (not stored, unless [`Flight::stored`] was called).
pub(crate) struct Flight {
    map: Flights,
    hash: KeyHash,
    tx: tokio::sync::watch::Sender<Option<bool>>,
    /// This flight's entry in the map (to remove it and no other).
    rx: FlightRx,
    stored: bool,
}

impl Flight {
    /// Marks the response stored.
    pub(crate) fn stored(&mut self) {
        self.stored = true;
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.hash).is_some_and(|rx| rx.same_channel(&self.rx)) {
            map.remove(&self.hash);
        }
        drop(map);
        let _ = self.tx.send(Some(self.stored));
    }
}

enum Joined {
    Leader(Flight),
    Follower(FlightRx),
}

fn join(map: &Flights, hash: KeyHash) -> Joined {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rx) = m.get(&hash) {
        return Joined::Follower(rx.clone());
    }
    let (tx, rx) = tokio::sync::watch::channel(None);
    m.insert(hash, rx.clone());
    Joined::Leader(Flight {
        map: map.clone(),
        hash,
        tx,
        rx,
        stored: false,
    })
}

/// Waits up to `limit` for a flight's end; true when its response was stored.
async fn wait_stored(mut rx: FlightRx, limit: std::time::Duration) -> bool {
    match tokio::time::timeout(limit, rx.wait_for(|v| v.is_some())).await {
        Ok(Ok(v)) => *v == Some(true),
        _ => false,
    }
}

/// Where one request's response is looked up and stored.
#[derive(Clone, Debug)]
struct Place {
    /// The primary key (the `key` template applied).
    key: String,
    /// Its hash.
    primary: KeyHash,
    /// The `Vary` names recorded under the primary key and the record's
    /// generation, if there is a record.
    vary: Option<(Vec<String>, Option<String>)>,
    /// The key of the entry (primary, or primary + secondary key).
    full_key: String,
    /// Its hash.
    hash: KeyHash,
}

struct Inner {
    store: Arc<Store>,
    proxy: Arc<Proxy>,
    flights: Flights,
}

/// One site's cache.
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("cfg", &self.inner.store.cfg)
            .field("upstream", &self.inner.proxy.upstream)
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
            inactive_ms: cfg.inactive.as_millis() as u64,
            max_size: cfg.max_size,
            min_uses: cfg.min_uses,
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                store: Arc::new(Store {
                    cfg,
                    policy,
                    storage,
                    zone,
                    mem: Mutex::new(MemMirror::default()),
                }),
                proxy,
                flights: Arc::new(Mutex::new(HashMap::new())),
            }),
        })
    }

    /// The way to the origin (for the requests a site passes through uncached).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.inner.proxy
    }

    /// Whether `PURGE` requests are answered here (`purge_allow` is set).
    pub fn purges(&self) -> bool {
        !self.inner.store.cfg.purge_allow.is_empty()
    }

    /// Answers a GET/HEAD from `peer` from the cache or the origin.
    pub async fn handle(&self, req: &Parts, peer: SocketAddr) -> Response<Body> {
        self.inner.clone().handle(req, peer).await
    }

    /// RFC 9111 §4.4: after a request passed through to the origin, drops
    /// what an unsafe method answered with 2xx/3xx may have changed (the
    /// target's entry, same-origin `Location` and `Content-Location`).
    /// Call it when the response head arrives, before the client can send
    /// its next request.
    pub fn invalidate(&self, req: &Parts, resp: &Response<Body>) {
        invalidate::after(&self.inner.store, req, resp.status(), resp.headers());
    }

    /// Answers a `PURGE` from `peer` (see [`purge`]).
    pub async fn purge(&self, req: &Parts, peer: SocketAddr) -> Response<Body> {
        self.inner.purge(req, peer)
    }
}

/// How a fetch for a stale entry ended, when the stale entry is served instead.
fn stale_allowed(
    cfg: &CacheConfig,
    c: &Cached,
    stale_ms: u64,
    outcome: Result<StatusCode, &UpstreamError>,
) -> bool {
    if c.cc.must_revalidate || c.cc.no_cache {
        return false;
    }
    let sie =
        c.cc.stale_if_error
            .is_some_and(|w| stale_ms <= w.saturating_mul(1000));
    match outcome {
        Ok(status) => {
            cfg.use_stale.on_status(status) || (sie && [500, 502, 503, 504].contains(&status.as_u16()))
        }
        Err(e) => {
            let timeout = matches!(
                e,
                UpstreamError::ConnectTimeout { .. }
                    | UpstreamError::ReadTimeout { .. }
                    | UpstreamError::SendTimeout { .. }
            );
            sie || if timeout {
                cfg.use_stale.timeout
            } else {
                cfg.use_stale.error
            }
        }
    }
}

impl Inner {
    fn cfg(&self) -> &CacheConfig {
        &self.store.cfg
    }

    /// The lookup on a shared snapshot of the index when the zone gives one
    /// (memory servers) and the lookup changes nothing there (a hit whose
    /// last use is fresh): no lock, no blocked thread, and one round trip
    /// for all the requests that arrived meanwhile. `None`: do it under the lock.
    async fn lookup_on_snapshot(&self, hash: &KeyHash, now: u64) -> Option<Lookup> {
        let snap = match self.store.zone.snapshot()?.await {
            Ok(s) => s?,
            // Counted and logged by the seam; the lookup falls back to the lock.
            Err(crate::shared::SharedError::Unavailable { .. }) => return None,
            Err(e) => {
                tracing::warn!("cache zone {}: snapshot: {e}", self.cfg().zone_name);
                return None;
            }
        };
        let mut copy = snap.bytes.clone();
        let mut ix = Index::open(&mut copy);
        let mut evicted = Vec::new();
        let l = ix.lookup(hash, now, &self.store.policy, &mut evicted);
        (!ix.changed()).then_some(l)
    }

    /// Looks `hash` up (snapshot first, else under the lock); `None` when the
    /// zone is unavailable.
    async fn lookup(&self, hash: &KeyHash, now: u64) -> Option<Lookup> {
        if let Some(l) = self.lookup_on_snapshot(hash, now).await {
            return Some(l);
        }
        let (l, evicted) = self.store.with_index(|ix| {
            let mut evicted = Vec::new();
            (ix.lookup(hash, now, &self.store.policy, &mut evicted), evicted)
        })?;
        self.store.forget_files(&evicted);
        Some(l)
    }

    async fn handle(self: Arc<Self>, req: &Parts, peer: SocketAddr) -> Response<Body> {
        let key = self.cfg().key.of(req);
        let primary = hash_of(&key);
        let now = now_ms();
        let mut place = Place {
            full_key: key.clone(),
            key,
            primary,
            vary: None,
            hash: primary,
        };
        let mut looked = self.lookup(&primary, now).await;
        if let Some(Lookup::Vary(s)) = looked {
            match self.store.load(&place.key, &primary, &s) {
                Some(rec) => {
                    let names = vary::names(&rec.headers);
                    let generation = rec
                        .headers
                        .get(vary::GENERATION)
                        .and_then(|g| g.to_str().ok())
                        .map(str::to_string);
                    place.full_key =
                        vary::variant_key(&place.key, generation.as_deref(), &names, &req.headers);
                    place.hash = hash_of(&place.full_key);
                    place.vary = Some((names, generation));
                    looked = self.lookup(&place.hash, now).await;
                }
                None => {
                    self.store.remove(&primary);
                    looked = Some(Lookup::Miss { store: true });
                }
            }
        }
        match looked {
            Some(Lookup::Hit(s)) => match self.store.load(&place.full_key, &place.hash, &s) {
                Some(c) => serve(req, &c, &s, now, "HIT"),
                None => {
                    self.store.remove(&place.hash);
                    self.miss(req, peer, place, true, "MISS").await
                }
            },
            Some(Lookup::Stale(s)) => match self.store.load(&place.full_key, &place.hash, &s) {
                Some(c) => self.stale(req, peer, place, c, s, now).await,
                None => {
                    self.store.remove(&place.hash);
                    self.miss(req, peer, place, true, "MISS").await
                }
            },
            // A vary record under a variant's key cannot happen; start over.
            Some(Lookup::Vary(_)) => {
                self.store.remove(&place.hash);
                self.miss(req, peer, place, true, "MISS").await
            }
            Some(Lookup::Miss { store }) => self.miss(req, peer, place, store, "MISS").await,
            None => self.miss(req, peer, place, false, "MISS").await,
        }
    }

    /// Not in the cache: one request fetches (streaming to its client and to
    /// storage), the others wait for its stored response up to `lock_timeout`.
    async fn miss(
        self: &Arc<Self>,
        req: &Parts,
        peer: SocketAddr,
        place: Place,
        store: bool,
        label: &'static str,
    ) -> Response<Body> {
        let flight = match join(&self.flights, place.hash) {
            Joined::Leader(f) => Some(f),
            Joined::Follower(rx) => {
                if wait_stored(rx, self.cfg().lock_timeout).await {
                    if let Some(r) = self.stored_answer(req, &place) {
                        return r;
                    }
                }
                None
            }
        };
        let request_time = SystemTime::now();
        match self.fetch(req, peer, None).await {
            Ok(resp) => self.forward(req, place, resp, request_time, store, label, flight),
            Err(e) => crate::proxy::error_response(&e),
        }
    }

    /// Serves the entry a single-flight leader just stored.
    fn stored_answer(&self, req: &Parts, place: &Place) -> Option<Response<Body>> {
        let now = now_ms();
        let s = self.store.with_index(|ix| {
            let mut ev = Vec::new();
            match ix.lookup(&place.hash, now, &self.store.policy, &mut ev) {
                Lookup::Hit(s) | Lookup::Stale(s) => Some(s),
                _ => None,
            }
        })??;
        let c = self.store.load(&place.full_key, &place.hash, &s)?;
        Some(serve(req, &c, &s, now, "MISS"))
    }

    /// Sends the origin a GET for `req` (a HEAD is fetched as GET so the
    /// body can be stored, NGINX's `proxy_cache_convert_head`), conditional
    /// on `validate`'s validators when revalidating.
    async fn fetch(
        &self,
        req: &Parts,
        peer: SocketAddr,
        validate: Option<&Cached>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut h = headers::to_origin(req, peer, &self.proxy.headers);
        for n in &NOT_FORWARDED {
            h.remove(n);
        }
        if let Some(c) = validate {
            if let Some(t) = &c.entity.etag {
                h.insert(header::IF_NONE_MATCH, t.clone());
            }
            if let Some((_, lm)) = &c.entity.last_modified {
                h.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        let mut r = Request::new(crate::proxy::empty_body());
        *r.uri_mut() = req
            .uri
            .path_and_query()
            .and_then(|p| p.as_str().parse().ok())
            .unwrap_or_else(|| http::Uri::from_static("/"));
        *r.headers_mut() = h;
        self.proxy.upstream.send(r).await
    }

    /// Sends an origin response on to the client, teeing its body into
    /// storage when it may be stored.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        self: &Arc<Self>,
        req: &Parts,
        place: Place,
        resp: Response<UpstreamBody>,
        request_time: SystemTime,
        store: bool,
        label: &'static str,
        flight: Option<Flight>,
    ) -> Response<Body> {
        let response_time = SystemTime::now();
        let (mut parts, body) = resp.into_parts();
        headers::from_origin(&mut parts.headers);
        let cc = CacheControl::parse(&parts.headers);
        let cfg = self.cfg();
        let len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let verdict = freshness::storable(
            &Method::GET,
            &req.headers,
            parts.status,
            &parts.headers,
            &cc,
            cfg.valid,
        );
        if let Err(why) = verdict {
            tracing::debug!("cache: {} not stored: {why:?}", place.full_key);
            if label == "EXPIRED" && !parts.status.is_server_error() {
                // The origin no longer lets the stale entry be kept (a 5xx
                // says nothing about it: it stays, for use_stale next time).
                self.store.remove(&place.hash);
            }
        }
        let writer = if store && verdict.is_ok() && len.is_none_or(|n| n <= cfg.max_size) {
            self.start_store(req, place, &parts, &cc, request_time, response_time)
        } else {
            None
        };
        let head_only = req.method == Method::HEAD;
        let mut out = Response::new(entity::empty());
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        let (k, v) = cache_status(label);
        out.headers_mut().insert(k, v);
        if let Some(t) = parts.extensions.get::<crate::access_log::UpstreamTime>() {
            out.extensions_mut().insert(*t);
        }
        match writer {
            Some(w) => {
                let body = tee::Tee::new(body, w, len, flight);
                if head_only {
                    // The client wants no body; the cache still does.
                    tokio::spawn(tee::drain(body));
                } else if let Some((a, b, total)) = miss_range(req, out.status(), len) {
                    *out.status_mut() = StatusCode::PARTIAL_CONTENT;
                    let h = out.headers_mut();
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{total}")) {
                        h.insert(header::CONTENT_RANGE, v);
                    }
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(b - a + 1));
                    *out.body_mut() = entity::stream(tee::Window::new(body, a, b - a + 1));
                } else {
                    *out.body_mut() = entity::stream(body);
                }
            }
            None => {
                drop(flight);
                if !head_only {
                    *out.body_mut() = entity::stream(body);
                }
            }
        }
        out
    }

    /// Prepares storing a response: the vary record when it varies, and a
    /// writer for the entry's file with its head written.
    fn start_store(
        self: &Arc<Self>,
        req: &Parts,
        mut place: Place,
        parts: &http::response::Parts,
        cc: &CacheControl,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Option<tee::Pending> {
        let names = vary::names(&parts.headers);
        if names.is_empty() {
            // No longer varying: the entry goes under the primary key.
            place.full_key.clone_from(&place.key);
            place.hash = place.primary;
        } else {
            let generation = match &place.vary {
                Some((n, g)) if *n == names => g.clone(),
                _ => None,
            };
            let generation = if let Some(g) = generation {
                Some(g)
            } else {
                let g = vary::new_generation();
                let rec = vec![
                    ("vary".to_string(), names.join(", ")),
                    (vary::GENERATION.to_string(), g.clone()),
                ];
                let head = file::encode_head(&place.key, 200, &rec);
                let now = now_ms();
                if !self.store.write_whole(&place.primary, &head, &[]) {
                    return None;
                }
                let e = NewEntry {
                    size: 0,
                    birth_ms: now,
                    fresh_until_ms: now,
                    vary: true,
                };
                self.store.commit(place.primary, e)?;
                Some(g)
            };
            place.full_key = vary::variant_key(&place.key, generation.as_deref(), &names, &req.headers);
            place.hash = hash_of(&place.full_key);
        }
        let lifetime = freshness::lifetime(&parts.headers, cc, response_time, self.cfg().valid);
        let age = freshness::initial_age(&parts.headers, request_time, response_time);
        let response_ms = freshness::ms(response_time);
        let birth_ms = response_ms.saturating_sub(age.as_millis() as u64);
        let fresh_until_ms = freshness::fresh_until_ms(response_ms, lifetime, age);
        let kept = kept_pairs(&parts.headers);
        let head = file::encode_head(&place.full_key, parts.status.as_u16(), &kept);
        let name = Store::file_name(&place.hash);
        let mut w = match self.store.storage.create_streaming(&name) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("cache: writing {name}: {e}");
                return None;
            }
        };
        if let Err(e) = w.write(&head) {
            tracing::error!("cache: writing {name}: {e}");
            return None;
        }
        Some(tee::Pending {
            store: self.store.clone(),
            hash: place.hash,
            writer: w,
            head_len: head.len() as u64,
            status: parts.status.as_u16(),
            kept,
            birth_ms,
            fresh_until_ms,
        })
    }

    /// A stale entry: served stale while it is refreshed (stale-while-revalidate,
    /// `use_stale updating`), or revalidated with the origin first.
    async fn stale(
        self: &Arc<Self>,
        req: &Parts,
        peer: SocketAddr,
        place: Place,
        c: Arc<Cached>,
        s: Stored,
        now: u64,
    ) -> Response<Body> {
        let cfg = self.cfg();
        let stale_ms = now.saturating_sub(s.fresh_until_ms);
        let may_stale = !c.cc.must_revalidate && !c.cc.no_cache;
        let swr = may_stale
            && c.cc
                .stale_while_revalidate
                .is_some_and(|w| stale_ms <= w.saturating_mul(1000));
        let flight = match join(&self.flights, place.hash) {
            Joined::Leader(f) => f,
            Joined::Follower(rx) => {
                if may_stale && (cfg.use_stale.updating || swr) {
                    return serve(req, &c, &s, now, "UPDATING");
                }
                if wait_stored(rx, cfg.lock_timeout).await {
                    if let Some(r) = self.stored_answer(req, &place) {
                        return r;
                    }
                }
                let request_time = SystemTime::now();
                return match self.fetch(req, peer, None).await {
                    Ok(resp) => self.forward(req, place, resp, request_time, true, "EXPIRED", None),
                    Err(e) => crate::proxy::error_response(&e),
                };
            }
        };
        if swr || (may_stale && cfg.use_stale.updating && cfg.background_update) {
            let me = self.clone();
            let (req2, c2) = (req.clone(), c.clone());
            tokio::spawn(async move {
                // As a HEAD: what is fetched is drained into the cache, and a
                // 304 sends nothing on.
                let mut bg = req2.clone();
                bg.method = Method::HEAD;
                let r = me.revalidate(&bg, peer, place, c2, s, flight).await;
                // Drain what the refresh streams into the cache.
                tee::drain(r.into_body()).await;
            });
            return serve(req, &c, &s, now, "STALE");
        }
        self.revalidate(req, peer, place, c, s, flight).await
    }

    /// Asks the origin whether the stale `c` is still good: a 304 refreshes
    /// it (REVALIDATED), a new response replaces it (EXPIRED), a failure
    /// serves it stale where allowed (STALE).
    async fn revalidate(
        self: &Arc<Self>,
        req: &Parts,
        peer: SocketAddr,
        place: Place,
        c: Arc<Cached>,
        s: Stored,
        mut flight: Flight,
    ) -> Response<Body> {
        let request_time = SystemTime::now();
        let stale_ms = now_ms().saturating_sub(s.fresh_until_ms);
        match self.fetch(req, peer, Some(&c)).await {
            Ok(resp) if resp.status() == StatusCode::NOT_MODIFIED => {
                let response_time = SystemTime::now();
                let (mut parts, _) = resp.into_parts();
                headers::from_origin(&mut parts.headers);
                let (fresh, s2) = self.refresh(&place, &c, &s, &parts.headers, request_time, response_time);
                if s2.is_some() {
                    flight.stored();
                }
                let s = s2.unwrap_or(s);
                drop(flight);
                serve(req, &fresh, &s, now_ms(), "REVALIDATED")
            }
            Ok(resp) => {
                if stale_allowed(self.cfg(), &c, stale_ms, Ok(resp.status())) {
                    drop(flight);
                    return serve(req, &c, &s, now_ms(), "STALE");
                }
                self.forward(req, place, resp, request_time, true, "EXPIRED", Some(flight))
            }
            Err(e) => {
                drop(flight);
                if stale_allowed(self.cfg(), &c, stale_ms, Err(&e)) {
                    crate::proxy::note_failure(&e);
                    return serve(req, &c, &s, now_ms(), "STALE");
                }
                crate::proxy::error_response(&e)
            }
        }
    }

    /// RFC 9111 §4.3.4: a 304 updates the stored headers and freshness; the
    /// body stays. Small entries get their file rewritten with the new
    /// headers; large ones only their index freshness (their body is not
    /// copied for a header change).
    fn refresh(
        &self,
        place: &Place,
        c: &Arc<Cached>,
        s: &Stored,
        got: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> (Arc<Cached>, Option<Stored>) {
        let mut merged = c.headers.clone();
        for name in got.keys() {
            if !NOT_KEPT.contains(&name.as_str()) {
                merged.remove(name);
            }
        }
        for (k, v) in got {
            if !NOT_KEPT.contains(&k.as_str()) {
                merged.append(k.clone(), v.clone());
            }
        }
        let mut for_lifetime = merged.clone();
        if let Some(d) = got.get(header::DATE) {
            for_lifetime.insert(header::DATE, d.clone());
        }
        let cc = CacheControl::parse(&merged);
        let lifetime = freshness::lifetime(&for_lifetime, &cc, response_time, self.cfg().valid);
        let age = freshness::initial_age(got, request_time, response_time);
        let response_ms = freshness::ms(response_time);
        let birth_ms = response_ms.saturating_sub(age.as_millis() as u64);
        let fresh_until_ms = freshness::fresh_until_ms(response_ms, lifetime, age);
        let status = c.entity.status.as_u16();
        let fresh = Arc::new(Cached::from_headers(status, merged, c.entity.body.clone()));
        let rewrite = match &c.entity.body {
            EntityBody::Memory(b) => {
                let head = file::encode_head(&place.full_key, status, &fresh.kept());
                self.store.write_whole(&place.hash, &head, b)
            }
            EntityBody::Stored { .. } => false,
        };
        let v = self
            .store
            .with_index(|ix| ix.refresh(&place.hash, s.version, birth_ms, fresh_until_ms, rewrite))
            .flatten();
        let stored = v.map(|version| {
            if rewrite {
                self.store.remember(place.hash, version, fresh.clone());
            }
            Stored {
                version,
                size: s.size,
                birth_ms,
                fresh_until_ms,
            }
        });
        // Large entries keep serving their stored headers.
        (if rewrite { fresh } else { c.clone() }, stored)
    }

    fn purge(&self, req: &Parts, peer: SocketAddr) -> Response<Body> {
        purge::run(&self.store, req, peer)
    }
}

/// The one byte range (first, last, total) a miss answers 206 with while
/// the whole body goes to the cache: a single satisfiable range of a 200
/// whose length is announced. Several ranges, an `If-Range` (the edge has
/// no stored validators to check it against yet) or an unknown length get
/// the whole 200, as RFC 9110 §14.2 allows.
fn miss_range(req: &Parts, status: StatusCode, len: Option<u64>) -> Option<(u64, u64, u64)> {
    let total = len?;
    if status != StatusCode::OK || req.headers.contains_key(header::IF_RANGE) {
        return None;
    }
    let v = req.headers.get(header::RANGE)?;
    match entity::parse_ranges(v.as_bytes(), total)? {
        Ok(r) if r.len() == 1 => Some((r[0].0, r[0].1, total)),
        _ => None,
    }
}

/// A response from the cache: the stored entity answered against the
/// request's conditionals and ranges, with `Age` (RFC 9111 §5.1) and the status label.
fn serve(req: &Parts, c: &Cached, s: &Stored, now: u64, label: &'static str) -> Response<Body> {
    let age = now.saturating_sub(s.birth_ms) / 1000;
    let extra = [(header::AGE, HeaderValue::from(age)), cache_status(label)];
    respond_with(&req.method, &req.headers, &c.entity, &extra)
}
