//! The OpenSSL 3 provider ABI: the entry point `OSSL_provider_init`, the
//! dispatch tables (key management, signature, decoder) as `repr(C)`
//! statics, the parameter plumbing and error raising. Every `unsafe` of the
//! crate is here; each function converts raw pointers into Rust values at
//! its top and calls the safe code in [`crate::key`] and [`crate::scheme`].
//! Panics never cross into OpenSSL: every entry runs under `guard`.
//!
//! Object lifetimes: a decoded key is an `Arc<RemoteKey>`. The decoder hands
//! OpenSSL a reference to its own `Arc` (a pointer's bytes); the key
//! manager's `load` boxes a new strong count in the key object it returns;
//! `free` drops the box. Signature contexts hold their own `Arc`.
#![allow(unsafe_code)]

use crate::error::{ProviderError, REASONS};
use crate::key::{PublicParts, RemoteKey};
use crate::scheme::{self, Digest, Padding, SaltLen};
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, OnceLock};

// ---- ABI types (openssl/core.h) ----

type Fn = unsafe extern "C" fn();

#[repr(C)]
pub struct Dispatch {
    id: c_int,
    f: Option<Fn>,
}

#[repr(C)]
struct Algorithm {
    names: *const c_char,
    props: *const c_char,
    implementation: *const Dispatch,
    description: *const c_char,
}

#[repr(C)]
struct Param {
    key: *const c_char,
    data_type: c_uint,
    data: *mut c_void,
    data_size: usize,
    return_size: usize,
}

#[repr(C)]
struct ErrStringData {
    error: c_ulong,
    string: *const c_char,
}

/// Statics of raw-pointer tables: read-only after construction.
#[repr(transparent)]
struct Table<T: ?Sized>(T);
// SAFETY: the tables hold pointers to 'static, immutable data only.
unsafe impl<T: ?Sized> Sync for Table<T> {}

const PARAM_INTEGER: c_uint = 1;
const PARAM_UNSIGNED_INTEGER: c_uint = 2;
const PARAM_UTF8_STRING: c_uint = 4;
const PARAM_OCTET_STRING: c_uint = 5;
const PARAM_UTF8_PTR: c_uint = 6;
const RETURN_SIZE_UNMODIFIED: usize = usize::MAX;

const OP_KEYMGMT: c_int = 10;
const OP_SIGNATURE: c_int = 12;
const OP_DECODER: c_int = 21;

const OBJECT_PKEY: c_int = 2;

type BioReadEx = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, *mut usize) -> c_int;
type ParamCallback = unsafe extern "C" fn(*const Param, *mut c_void) -> c_int;

#[link(name = "crypto")]
extern "C" {
    fn ERR_new();
    fn ERR_set_debug(file: *const c_char, line: c_int, func: *const c_char);
    fn ERR_set_error(lib: c_int, reason: c_int, fmt: *const c_char, ...);
    fn ERR_get_next_error_library() -> c_int;
    fn ERR_load_strings(lib: c_int, str: *mut ErrStringData) -> c_int;
    fn OSSL_PARAM_locate(p: *mut Param, key: *const c_char) -> *mut Param;
    fn OSSL_PARAM_locate_const(p: *const Param, key: *const c_char) -> *const Param;
    fn OSSL_PARAM_set_int(p: *mut Param, v: c_int) -> c_int;
    fn OSSL_PARAM_set_utf8_string(p: *mut Param, v: *const c_char) -> c_int;
    fn OSSL_PARAM_get_int(p: *const Param, v: *mut c_int) -> c_int;
    fn OSSL_PARAM_get_utf8_string_ptr(p: *const Param, v: *mut *const c_char) -> c_int;
}

// ---- process-wide state ----

static BIO_READ_EX: OnceLock<BioReadEx> = OnceLock::new();
static ERR_LIB: OnceLock<c_int> = OnceLock::new();

/// Registers the `conclave` error library and its reasons once per process.
fn error_library() -> c_int {
    *ERR_LIB.get_or_init(|| {
        // SAFETY: ERR_get_next_error_library has no preconditions. The
        // string tables are leaked so they live as long as OpenSSL keeps
        // pointers to them (the process).
        unsafe {
            let lib = ERR_get_next_error_library();
            let mut reasons: Vec<ErrStringData> = REASONS
                .iter()
                .map(|(code, text)| ErrStringData {
                    error: *code as c_ulong,
                    string: CString::new(*text).unwrap_or_default().into_raw(),
                })
                .collect();
            reasons.push(ErrStringData {
                error: 0,
                string: ptr::null(),
            });
            ERR_load_strings(lib, Box::leak(reasons.into_boxed_slice()).as_mut_ptr());
            let name = Box::leak(Box::new([
                ErrStringData {
                    error: ((lib as c_ulong) & 0xff) << 23,
                    string: c"conclave".as_ptr(),
                },
                ErrStringData {
                    error: 0,
                    string: ptr::null(),
                },
            ]));
            ERR_load_strings(0, name.as_mut_ptr());
            lib
        }
    })
}

/// Puts `e` on OpenSSL's error queue (what NGINX logs).
fn raise(e: &ProviderError, func: &CStr) {
    let msg = CString::new(e.to_string().replace('\0', " ")).unwrap_or_default();
    let lib = error_library();
    // SAFETY: all strings are NUL-terminated and outlive the calls (OpenSSL
    // copies the formatted data); the format takes exactly one string.
    unsafe {
        ERR_new();
        ERR_set_debug(c"conclave-openssl".as_ptr(), 0, func.as_ptr());
        ERR_set_error(lib, e.reason(), c"%s".as_ptr(), msg.as_ptr());
    }
}

/// Runs `f`, turning a panic into `fail` so no unwind reaches C.
fn guard<T>(fail: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fail)
}

macro_rules! func {
    ($id:expr, $f:expr, $t:ty) => {
        Dispatch {
            id: $id,
            // SAFETY: OpenSSL calls each function through the signature its
            // id defines (core_dispatch.h), which `$t` spells out.
            f: Some(unsafe { std::mem::transmute::<$t, Fn>($f as $t) }),
        }
    };
}

const END: Dispatch = Dispatch { id: 0, f: None };

// ---- provider ----

type ProvGetParams = unsafe extern "C" fn(*mut c_void, *mut Param) -> c_int;
type ProvGettable = unsafe extern "C" fn(*mut c_void) -> *const Param;
type ProvQuery = unsafe extern "C" fn(*mut c_void, c_int, *mut c_int) -> *const Algorithm;
type ProvTeardown = unsafe extern "C" fn(*mut c_void);

static PROVIDER_FUNCS: Table<[Dispatch; 5]> = Table([
    func!(1024, prov_teardown, ProvTeardown),
    func!(1025, prov_gettable_params, ProvGettable),
    func!(1026, prov_get_params, ProvGetParams),
    func!(1027, prov_query, ProvQuery),
    END,
]);

const fn param_decl(key: &'static CStr, data_type: c_uint) -> Param {
    Param {
        key: key.as_ptr(),
        data_type,
        data: ptr::null_mut(),
        data_size: 0,
        return_size: 0,
    }
}

const PARAM_END: Param = Param {
    key: ptr::null(),
    data_type: 0,
    data: ptr::null_mut(),
    data_size: 0,
    return_size: 0,
};

static PROV_PARAMS: Table<[Param; 4]> = Table([
    param_decl(c"name", PARAM_UTF8_PTR),
    param_decl(c"version", PARAM_UTF8_PTR),
    param_decl(c"status", PARAM_INTEGER),
    PARAM_END,
]);

/// The provider's entry point, called by OpenSSL when it loads the module.
///
/// # Safety
/// Called by OpenSSL with valid `core_in` (an END-terminated table) and
/// writable `out` and `provctx`.
#[no_mangle]
pub unsafe extern "C" fn OSSL_provider_init(
    _handle: *const c_void,
    core_in: *const Dispatch,
    out: *mut *const Dispatch,
    provctx: *mut *mut c_void,
) -> c_int {
    guard(0, || {
        // SAFETY: OpenSSL passes an END-terminated dispatch table.
        unsafe {
            let mut d = core_in;
            while !d.is_null() && (*d).id != 0 {
                if (*d).id == 42 {
                    if let Some(f) = (*d).f {
                        // id 42 is OSSL_FUNC_BIO_READ_EX.
                        let _ = BIO_READ_EX.set(std::mem::transmute::<Fn, BioReadEx>(f));
                    }
                }
                d = d.add(1);
            }
            error_library();
            *out = PROVIDER_FUNCS.0.as_ptr();
            // No per-load state: a non-null token is all OpenSSL needs.
            *provctx = PROVIDER_FUNCS.0.as_ptr() as *mut c_void;
        }
        1
    })
}

unsafe extern "C" fn prov_teardown(_provctx: *mut c_void) {}

unsafe extern "C" fn prov_gettable_params(_provctx: *mut c_void) -> *const Param {
    PROV_PARAMS.0.as_ptr()
}

unsafe extern "C" fn prov_get_params(_provctx: *mut c_void, params: *mut Param) -> c_int {
    guard(0, || {
        // SAFETY: `params` is an END-terminated array from OpenSSL.
        unsafe {
            let p = OSSL_PARAM_locate(params, c"name".as_ptr());
            if !p.is_null() && set_utf8_ptr(p, c"conclave keyless provider") == 0 {
                return 0;
            }
            let p = OSSL_PARAM_locate(params, c"version".as_ptr());
            if !p.is_null() && set_utf8_ptr(p, VERSION) == 0 {
                return 0;
            }
            let p = OSSL_PARAM_locate(params, c"status".as_ptr());
            if !p.is_null() && OSSL_PARAM_set_int(p, 1) == 0 {
                return 0;
            }
        }
        1
    })
}

const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(s) => s,
    Err(_) => c"0",
};

/// Sets a UTF8_PTR parameter to a static string.
///
/// # Safety
/// `p` points at a valid parameter.
unsafe fn set_utf8_ptr(p: *mut Param, s: &'static CStr) -> c_int {
    // SAFETY: per the caller; a UTF8_PTR's data is a `*const c_char` slot.
    unsafe {
        if (*p).data_type != PARAM_UTF8_PTR || (*p).data.is_null() {
            return OSSL_PARAM_set_utf8_string(p, s.as_ptr());
        }
        *((*p).data as *mut *const c_char) = s.as_ptr();
        (*p).return_size = s.to_bytes().len();
    }
    1
}

const RSA_NAMES: &CStr = c"RSA:rsaEncryption:1.2.840.113549.1.1.1";
const EC_NAMES: &CStr = c"EC:id-ecPublicKey:1.2.840.10045.2.1";

static KEYMGMTS: Table<[Algorithm; 3]> = Table([
    Algorithm {
        names: RSA_NAMES.as_ptr(),
        props: c"provider=conclave".as_ptr(),
        implementation: RSA_KEYMGMT.0.as_ptr(),
        description: c"RSA key held by the conclave key server".as_ptr(),
    },
    Algorithm {
        names: EC_NAMES.as_ptr(),
        props: c"provider=conclave".as_ptr(),
        implementation: EC_KEYMGMT.0.as_ptr(),
        description: c"EC key held by the conclave key server".as_ptr(),
    },
    Algorithm {
        names: ptr::null(),
        props: ptr::null(),
        implementation: ptr::null(),
        description: ptr::null(),
    },
]);

static SIGNATURES: Table<[Algorithm; 3]> = Table([
    Algorithm {
        names: RSA_NAMES.as_ptr(),
        props: c"provider=conclave".as_ptr(),
        implementation: SIGNATURE.0.as_ptr(),
        description: c"RSA signatures made by the conclave key server".as_ptr(),
    },
    Algorithm {
        names: c"ECDSA".as_ptr(),
        props: c"provider=conclave".as_ptr(),
        implementation: SIGNATURE.0.as_ptr(),
        description: c"ECDSA signatures made by the conclave key server".as_ptr(),
    },
    Algorithm {
        names: ptr::null(),
        props: ptr::null(),
        implementation: ptr::null(),
        description: ptr::null(),
    },
]);

static DECODERS: Table<[Algorithm; 4]> = Table([
    Algorithm {
        names: c"DER".as_ptr(),
        props: c"provider=conclave,input=pem".as_ptr(),
        implementation: PEM_DECODER.0.as_ptr(),
        description: c"conclave key reference (PEM to its body)".as_ptr(),
    },
    Algorithm {
        names: RSA_NAMES.as_ptr(),
        props: c"provider=conclave,input=der,structure=ConclaveKeyRef".as_ptr(),
        implementation: RSA_DECODER.0.as_ptr(),
        description: c"conclave key reference (RSA)".as_ptr(),
    },
    Algorithm {
        names: EC_NAMES.as_ptr(),
        props: c"provider=conclave,input=der,structure=ConclaveKeyRef".as_ptr(),
        implementation: EC_DECODER.0.as_ptr(),
        description: c"conclave key reference (EC)".as_ptr(),
    },
    Algorithm {
        names: ptr::null(),
        props: ptr::null(),
        implementation: ptr::null(),
        description: ptr::null(),
    },
]);

unsafe extern "C" fn prov_query(_provctx: *mut c_void, op: c_int, no_cache: *mut c_int) -> *const Algorithm {
    // SAFETY: `no_cache` is a valid out-pointer from OpenSSL.
    unsafe {
        if !no_cache.is_null() {
            *no_cache = 0;
        }
    }
    match op {
        OP_KEYMGMT => KEYMGMTS.0.as_ptr(),
        OP_SIGNATURE => SIGNATURES.0.as_ptr(),
        OP_DECODER => DECODERS.0.as_ptr(),
        _ => ptr::null(),
    }
}

// ---- key management ----

type KmLoad = unsafe extern "C" fn(*const c_void, usize) -> *mut c_void;
type KmFree = unsafe extern "C" fn(*mut c_void);
type KmHas = unsafe extern "C" fn(*const c_void, c_int) -> c_int;
type KmGetParams = unsafe extern "C" fn(*mut c_void, *mut Param) -> c_int;
type KmGettable = unsafe extern "C" fn(*mut c_void) -> *const Param;
type KmQueryName = unsafe extern "C" fn(c_int) -> *const c_char;
type KmNew = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type KmMatch = unsafe extern "C" fn(*const c_void, *const c_void, c_int) -> c_int;
type KmImport = unsafe extern "C" fn(*mut c_void, c_int, *const Param) -> c_int;
type KmImportTypes = unsafe extern "C" fn(c_int) -> *const Param;

// No `export`: OpenSSL 3.0 first tries the default provider's signature
// with the key exported to it, and only when that export fails uses the
// key's own provider. A key that cannot leave is what routes signing here.
// The certificate check (`X509_check_private_key`) instead imports the
// certificate's public key into our key manager and asks `match`.
macro_rules! keymgmt_table {
    ($name:ident, $query:ident, $gettable:ident, $types:ident) => {
        static $name: Table<[Dispatch; 11]> = Table([
            func!(1, km_new, KmNew),
            func!(8, km_load, KmLoad),
            func!(10, km_free, KmFree),
            func!(11, km_get_params, KmGetParams),
            func!(12, $gettable, KmGettable),
            func!(20, $query, KmQueryName),
            func!(21, km_has, KmHas),
            func!(23, km_match, KmMatch),
            func!(40, km_import, KmImport),
            func!(41, $types, KmImportTypes),
            END,
        ]);
    };
}

keymgmt_table!(RSA_KEYMGMT, km_rsa_query, km_rsa_gettable, km_rsa_import_types);
keymgmt_table!(EC_KEYMGMT, km_ec_query, km_ec_gettable, km_ec_import_types);

/// A key object: a key at the key server, or a public key imported to be
/// compared with one (what OpenSSL makes of a certificate's key).
#[derive(Default)]
struct KeyObject {
    remote: Option<Arc<RemoteKey>>,
    public: Option<PublicParts>,
}

impl KeyObject {
    fn public(&self) -> Option<&PublicParts> {
        self.remote.as_ref().map(|k| k.public()).or(self.public.as_ref())
    }
}

/// Borrows a key object.
///
/// # Safety
/// `keydata` is null or a pointer `km_new`/`km_load` returned and `km_free`
/// has not freed.
unsafe fn key_obj<'a>(keydata: *const c_void) -> Option<&'a KeyObject> {
    // SAFETY: per the caller.
    unsafe { (keydata as *const KeyObject).as_ref() }
}

/// Borrows the remote key of a key object.
///
/// # Safety
/// As [`key_obj`].
unsafe fn key_ref<'a>(keydata: *const c_void) -> Option<&'a RemoteKey> {
    // SAFETY: per the caller.
    unsafe { key_obj(keydata) }.and_then(|o| o.remote.as_deref())
}

unsafe extern "C" fn km_new(_provctx: *mut c_void) -> *mut c_void {
    guard(ptr::null_mut(), || {
        Box::into_raw(Box::<KeyObject>::default()) as *mut c_void
    })
}

unsafe extern "C" fn km_load(reference: *const c_void, size: usize) -> *mut c_void {
    guard(ptr::null_mut(), || {
        if reference.is_null() || size != std::mem::size_of::<*const RemoteKey>() {
            return ptr::null_mut();
        }
        // SAFETY: our decoder passed the bytes of an `Arc::as_ptr` it keeps
        // alive for the duration of the callback that leads here.
        let key = unsafe {
            let p = ptr::read_unaligned(reference as *const *const RemoteKey);
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        Box::into_raw(Box::new(KeyObject {
            remote: Some(key),
            public: None,
        })) as *mut c_void
    })
}

unsafe extern "C" fn km_free(keydata: *mut c_void) {
    if !keydata.is_null() {
        // SAFETY: `keydata` came from `km_new` or `km_load`.
        unsafe { drop(Box::from_raw(keydata as *mut KeyObject)) };
    }
}

unsafe extern "C" fn km_has(keydata: *const c_void, selection: c_int) -> c_int {
    // SAFETY: a live key object or null.
    let Some(o) = (unsafe { key_obj(keydata) }) else {
        return 0;
    };
    // A remote key has both halves (the private one at the key server).
    if o.remote.is_some() {
        return 1;
    }
    let private = 0x01; // OSSL_KEYMGMT_SELECT_PRIVATE_KEY
    c_int::from(o.public.is_some() && selection & private == 0)
}

unsafe extern "C" fn km_match(a: *const c_void, b: *const c_void, _selection: c_int) -> c_int {
    guard(0, || {
        // SAFETY: live key objects or null.
        let (Some(a), Some(b)) = (unsafe { key_obj(a) }, unsafe { key_obj(b) }) else {
            return 0;
        };
        match (a.public(), b.public()) {
            (Some(x), Some(y)) => c_int::from(x == y),
            _ => 0,
        }
    })
}

/// Big-endian bytes, without leading zeros, of an OSSL_PARAM unsigned integer.
///
/// # Safety
/// `p` is a valid parameter.
unsafe fn param_uint(p: *const Param) -> Option<Vec<u8>> {
    // SAFETY: per the caller; `data` is readable for `data_size` bytes.
    unsafe {
        if (*p).data_type != PARAM_UNSIGNED_INTEGER || (*p).data.is_null() {
            return None;
        }
        let mut v = std::slice::from_raw_parts((*p).data as *const u8, (*p).data_size).to_vec();
        if cfg!(target_endian = "little") {
            v.reverse();
        }
        let start = v.iter().position(|&x| x != 0).unwrap_or(v.len());
        Some(v[start..].to_vec())
    }
}

/// Imports a public key (OpenSSL's parameters of the certificate's key).
unsafe extern "C" fn km_import(keydata: *mut c_void, _selection: c_int, params: *const Param) -> c_int {
    guard(0, || {
        // SAFETY: a live key object from `km_new`; `params` END-terminated.
        unsafe {
            let Some(o) = (keydata as *mut KeyObject).as_mut() else {
                return 0;
            };
            if params.is_null() {
                return 0;
            }
            let n = OSSL_PARAM_locate_const(params, c"n".as_ptr());
            let e = OSSL_PARAM_locate_const(params, c"e".as_ptr());
            if !n.is_null() && !e.is_null() {
                let (Some(n), Some(e)) = (param_uint(n), param_uint(e)) else {
                    return 0;
                };
                o.public = Some(PublicParts::Rsa { n, e });
                return 1;
            }
            let g = OSSL_PARAM_locate_const(params, c"group".as_ptr());
            let p = OSSL_PARAM_locate_const(params, c"pub".as_ptr());
            if g.is_null() || p.is_null() || (*p).data.is_null() {
                return 0;
            }
            let mut name: *const c_char = ptr::null();
            if OSSL_PARAM_get_utf8_string_ptr(g, &mut name) == 0 {
                return 0;
            }
            let group = match str_arg(name) {
                Some("prime256v1" | "P-256" | "secp256r1") => "prime256v1",
                Some("secp384r1" | "P-384") => "secp384r1",
                _ => return 0,
            };
            let point = std::slice::from_raw_parts((*p).data as *const u8, (*p).data_size).to_vec();
            o.public = Some(PublicParts::Ec { group, point });
            1
        }
    })
}

static RSA_GETTABLE: Table<[Param; 5]> = Table([
    param_decl(c"bits", PARAM_INTEGER),
    param_decl(c"security-bits", PARAM_INTEGER),
    param_decl(c"max-size", PARAM_INTEGER),
    param_decl(c"default-digest", PARAM_UTF8_STRING),
    PARAM_END,
]);
static EC_GETTABLE: Table<[Param; 6]> = Table([
    param_decl(c"bits", PARAM_INTEGER),
    param_decl(c"security-bits", PARAM_INTEGER),
    param_decl(c"max-size", PARAM_INTEGER),
    param_decl(c"default-digest", PARAM_UTF8_STRING),
    param_decl(c"group", PARAM_UTF8_STRING),
    PARAM_END,
]);
static RSA_IMPORT_TYPES: Table<[Param; 3]> = Table([
    param_decl(c"n", PARAM_UNSIGNED_INTEGER),
    param_decl(c"e", PARAM_UNSIGNED_INTEGER),
    PARAM_END,
]);
static EC_IMPORT_TYPES: Table<[Param; 3]> = Table([
    param_decl(c"group", PARAM_UTF8_STRING),
    param_decl(c"pub", PARAM_OCTET_STRING),
    PARAM_END,
]);

unsafe extern "C" fn km_rsa_gettable(_provctx: *mut c_void) -> *const Param {
    RSA_GETTABLE.0.as_ptr()
}
unsafe extern "C" fn km_ec_gettable(_provctx: *mut c_void) -> *const Param {
    EC_GETTABLE.0.as_ptr()
}
unsafe extern "C" fn km_rsa_import_types(_selection: c_int) -> *const Param {
    RSA_IMPORT_TYPES.0.as_ptr()
}
unsafe extern "C" fn km_ec_import_types(_selection: c_int) -> *const Param {
    EC_IMPORT_TYPES.0.as_ptr()
}
unsafe extern "C" fn km_rsa_query(op: c_int) -> *const c_char {
    if op == OP_SIGNATURE {
        c"RSA".as_ptr()
    } else {
        ptr::null()
    }
}
unsafe extern "C" fn km_ec_query(op: c_int) -> *const c_char {
    if op == OP_SIGNATURE {
        c"ECDSA".as_ptr()
    } else {
        ptr::null()
    }
}

unsafe extern "C" fn km_get_params(keydata: *mut c_void, params: *mut Param) -> c_int {
    guard(0, || {
        // SAFETY: a live key object and an END-terminated array from OpenSSL.
        unsafe {
            let Some(key) = key_ref(keydata) else { return 1 };
            let ints = [
                (c"bits", key.bits()),
                (c"security-bits", key.security_bits()),
                (c"max-size", key.max_signature_len() as c_int),
            ];
            for (name, v) in ints {
                let p = OSSL_PARAM_locate(params, name.as_ptr());
                if !p.is_null() && OSSL_PARAM_set_int(p, v) == 0 {
                    return 0;
                }
            }
            let p = OSSL_PARAM_locate(params, c"default-digest".as_ptr());
            if !p.is_null() && OSSL_PARAM_set_utf8_string(p, c"SHA256".as_ptr()) == 0 {
                return 0;
            }
            if let PublicParts::Ec { group, .. } = key.public() {
                let p = OSSL_PARAM_locate(params, c"group".as_ptr());
                let g = CString::new(*group).unwrap_or_default();
                if !p.is_null() && OSSL_PARAM_set_utf8_string(p, g.as_ptr()) == 0 {
                    return 0;
                }
            }
        }
        1
    })
}

// ---- decoder ----

type DecNewCtx = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type DecFreeCtx = unsafe extern "C" fn(*mut c_void);
type DecDecode = unsafe extern "C" fn(
    *mut c_void,
    *mut c_void,
    c_int,
    ParamCallback,
    *mut c_void,
    *const c_void,
    *mut c_void,
) -> c_int;

static PEM_DECODER: Table<[Dispatch; 4]> = Table([
    func!(1, dec_new_pem, DecNewCtx),
    func!(2, dec_free, DecFreeCtx),
    func!(11, dec_decode_pem, DecDecode),
    END,
]);
static RSA_DECODER: Table<[Dispatch; 4]> = Table([
    func!(1, dec_new_rsa, DecNewCtx),
    func!(2, dec_free, DecFreeCtx),
    func!(11, dec_decode, DecDecode),
    END,
]);
static EC_DECODER: Table<[Dispatch; 4]> = Table([
    func!(1, dec_new_ec, DecNewCtx),
    func!(2, dec_free, DecFreeCtx),
    func!(11, dec_decode, DecDecode),
    END,
]);

/// Which step a decoder instance does: PEM to body, or body to an RSA or EC key.
struct DecoderCtx {
    pem: bool,
    rsa: bool,
}

unsafe extern "C" fn dec_new_pem(_provctx: *mut c_void) -> *mut c_void {
    Box::into_raw(Box::new(DecoderCtx {
        pem: true,
        rsa: false,
    })) as *mut c_void
}

unsafe extern "C" fn dec_new_rsa(_provctx: *mut c_void) -> *mut c_void {
    Box::into_raw(Box::new(DecoderCtx {
        pem: false,
        rsa: true,
    })) as *mut c_void
}
unsafe extern "C" fn dec_new_ec(_provctx: *mut c_void) -> *mut c_void {
    Box::into_raw(Box::new(DecoderCtx {
        pem: false,
        rsa: false,
    })) as *mut c_void
}
unsafe extern "C" fn dec_free(ctx: *mut c_void) {
    if !ctx.is_null() {
        // SAFETY: made by `dec_new_*`.
        unsafe { drop(Box::from_raw(ctx as *mut DecoderCtx)) };
    }
}

/// Key reference files are small; anything bigger is not one.
const MAX_REFERENCE: usize = 64 * 1024;

/// Reads the whole input through the core's BIO.
///
/// # Safety
/// `bio` is the core BIO OpenSSL passed to `decode`.
unsafe fn read_all(bio: *mut c_void) -> Option<Vec<u8>> {
    let read = *BIO_READ_EX.get()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut n = 0usize;
        // SAFETY: `buf` is writable for its length; `n` is a valid out-pointer.
        let ok = unsafe { read(bio, buf.as_mut_ptr() as *mut c_void, buf.len(), &mut n) };
        if ok == 0 || n == 0 {
            return Some(out);
        }
        out.extend_from_slice(&buf[..n.min(buf.len())]);
        if out.len() > MAX_REFERENCE {
            return None;
        }
    }
}

/// PEM to body: OpenSSL's own PEM decoder passes over a label it does not
/// know, so ours turns a `CONCLAVE KEY REFERENCE` into its body, tagged with
/// the structure our key decoders take (this is also what lets OpenSSL's
/// `file:` store, used by `openssl s_server -key`, find them).
unsafe extern "C" fn dec_decode_pem(
    _ctx: *mut c_void,
    bio: *mut c_void,
    _selection: c_int,
    data_cb: ParamCallback,
    data_cbarg: *mut c_void,
    _pw_cb: *const c_void,
    _pw_cbarg: *mut c_void,
) -> c_int {
    // "Empty handed" (1 without a callback) lets OpenSSL try other decoders;
    // 0 stops the whole decoding, so it is kept for our own broken files.
    guard(0, || {
        // SAFETY: `bio` is the core BIO of this call.
        let Some(text) = (unsafe { read_all(bio) }) else {
            return 1;
        };
        if !conclave_keys::keyref::KeyReference::looks_like(&text) {
            return 1;
        }
        let mut body = match conclave_keys::keyref::KeyReference::body_from_pem(&text) {
            Ok(b) => b,
            Err(e) => {
                raise(&ProviderError::BadReference(e.to_string()), c"decode");
                return 0;
            }
        };
        let structure = c"ConclaveKeyRef";
        let params = [
            Param {
                key: c"data".as_ptr(),
                data_type: PARAM_OCTET_STRING,
                data: body.as_mut_ptr() as *mut c_void,
                data_size: body.len(),
                return_size: RETURN_SIZE_UNMODIFIED,
            },
            Param {
                key: c"data-structure".as_ptr(),
                data_type: PARAM_UTF8_STRING,
                data: structure.as_ptr() as *mut c_void,
                data_size: structure.to_bytes().len(),
                return_size: RETURN_SIZE_UNMODIFIED,
            },
            PARAM_END,
        ];
        // SAFETY: `params` and `body` outlive the callback, which copies.
        unsafe { data_cb(params.as_ptr(), data_cbarg) }
    })
}

/// Body to key: builds the [`RemoteKey`] and hands OpenSSL a reference.
unsafe extern "C" fn dec_decode(
    ctx: *mut c_void,
    bio: *mut c_void,
    _selection: c_int,
    object_cb: ParamCallback,
    object_cbarg: *mut c_void,
    _pw_cb: *const c_void,
    _pw_cbarg: *mut c_void,
) -> c_int {
    guard(0, || {
        // SAFETY: `ctx` from `dec_new_*`, `bio` the core BIO of this call.
        let (want_rsa, body) = unsafe {
            let Some(c) = (ctx as *const DecoderCtx).as_ref() else {
                return 0;
            };
            if c.pem {
                return 0;
            }
            (c.rsa, read_all(bio))
        };
        let Some(body) = body else { return 1 };
        if !conclave_keys::keyref::KeyReference::is_body(&body) {
            return 1;
        }
        let key = match RemoteKey::from_body(&body) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                raise(&e, c"decode");
                return 0;
            }
        };
        if key.is_rsa() != want_rsa {
            return 1;
        }
        let mut object_type = OBJECT_PKEY;
        let data_type: &CStr = if want_rsa { c"RSA" } else { c"EC" };
        let mut reference = Arc::as_ptr(&key);
        let params = [
            Param {
                key: c"type".as_ptr(),
                data_type: PARAM_INTEGER,
                data: &mut object_type as *mut c_int as *mut c_void,
                data_size: std::mem::size_of::<c_int>(),
                return_size: RETURN_SIZE_UNMODIFIED,
            },
            Param {
                key: c"data-type".as_ptr(),
                data_type: PARAM_UTF8_STRING,
                data: data_type.as_ptr() as *mut c_void,
                data_size: data_type.to_bytes().len(),
                return_size: RETURN_SIZE_UNMODIFIED,
            },
            Param {
                key: c"reference".as_ptr(),
                data_type: PARAM_OCTET_STRING,
                data: &mut reference as *mut *const RemoteKey as *mut c_void,
                data_size: std::mem::size_of::<*const RemoteKey>(),
                return_size: RETURN_SIZE_UNMODIFIED,
            },
            PARAM_END,
        ];
        // SAFETY: `params` and `key` outlive the callback; `km_load` takes
        // its own count of `key` if OpenSSL keeps the object.
        unsafe { object_cb(params.as_ptr(), object_cbarg) }
    })
}

// ---- signature ----

type SigNewCtx = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
type SigFreeCtx = unsafe extern "C" fn(*mut c_void);
type SigDupCtx = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type SigDigestInit = unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void, *const Param) -> c_int;
type SigUpdate = unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int;
type SigFinal = unsafe extern "C" fn(*mut c_void, *mut u8, *mut usize, usize) -> c_int;
type SigOneShot = unsafe extern "C" fn(*mut c_void, *mut u8, *mut usize, usize, *const u8, usize) -> c_int;
type SigSetParams = unsafe extern "C" fn(*mut c_void, *const Param) -> c_int;
type SigSettable = unsafe extern "C" fn(*mut c_void, *mut c_void) -> *const Param;

static SIGNATURE: Table<[Dispatch; 10]> = Table([
    func!(1, sig_new, SigNewCtx),
    func!(8, sig_digest_sign_init, SigDigestInit),
    func!(9, sig_update, SigUpdate),
    func!(10, sig_final, SigFinal),
    func!(11, sig_digest_sign, SigOneShot),
    func!(16, sig_free, SigFreeCtx),
    func!(17, sig_dup, SigDupCtx),
    func!(20, sig_set_params, SigSetParams),
    func!(21, sig_settable, SigSettable),
    END,
]);

static SIG_SETTABLE: Table<[Param; 5]> = Table([
    param_decl(c"digest", PARAM_UTF8_STRING),
    param_decl(c"pad-mode", PARAM_UTF8_STRING),
    param_decl(c"saltlen", PARAM_UTF8_STRING),
    param_decl(c"mgf1-digest", PARAM_UTF8_STRING),
    PARAM_END,
]);

/// One signing operation: its key, parameters and (for streaming callers)
/// the message so far. The whole message goes to the key server either way.
#[derive(Clone)]
struct SigCtx {
    key: Option<Arc<RemoteKey>>,
    md: Digest,
    pad: Padding,
    salt: SaltLen,
    mgf1: Option<Digest>,
    buf: Vec<u8>,
}

unsafe extern "C" fn sig_new(_provctx: *mut c_void, _propq: *const c_char) -> *mut c_void {
    guard(ptr::null_mut(), || {
        Box::into_raw(Box::new(SigCtx {
            key: None,
            md: Digest::Sha256,
            pad: Padding::Pkcs1,
            salt: SaltLen::Digest,
            mgf1: None,
            buf: Vec::new(),
        })) as *mut c_void
    })
}

unsafe extern "C" fn sig_free(ctx: *mut c_void) {
    if !ctx.is_null() {
        // SAFETY: made by `sig_new` or `sig_dup`.
        unsafe { drop(Box::from_raw(ctx as *mut SigCtx)) };
    }
}

unsafe extern "C" fn sig_dup(ctx: *mut c_void) -> *mut c_void {
    guard(ptr::null_mut(), || {
        // SAFETY: made by `sig_new` or `sig_dup`.
        match unsafe { (ctx as *const SigCtx).as_ref() } {
            Some(c) => Box::into_raw(Box::new(c.clone())) as *mut c_void,
            None => ptr::null_mut(),
        }
    })
}

/// # Safety
/// `s` is null or a NUL-terminated string.
unsafe fn str_arg<'a>(s: *const c_char) -> Option<&'a str> {
    if s.is_null() {
        return None;
    }
    // SAFETY: per the caller.
    unsafe { CStr::from_ptr(s) }.to_str().ok()
}

/// # Safety
/// `params` is null or an END-terminated array.
unsafe fn apply_params(c: &mut SigCtx, params: *const Param) -> Result<(), ProviderError> {
    if params.is_null() {
        return Ok(());
    }
    // SAFETY: per the caller; each located parameter is valid.
    unsafe {
        let text = |p: *const Param| -> Option<String> {
            let mut s: *const c_char = ptr::null();
            if OSSL_PARAM_get_utf8_string_ptr(p, &mut s) == 0 {
                return None;
            }
            str_arg(s).map(str::to_string)
        };
        let int = |p: *const Param| -> Option<i32> {
            let mut v: c_int = 0;
            (OSSL_PARAM_get_int(p, &mut v) != 0).then_some(v)
        };
        let p = OSSL_PARAM_locate_const(params, c"digest".as_ptr());
        if !p.is_null() {
            let name = text(p).unwrap_or_default();
            c.md =
                Digest::parse(&name).ok_or_else(|| ProviderError::Unsupported(format!("digest {name:?}")))?;
        }
        let p = OSSL_PARAM_locate_const(params, c"pad-mode".as_ptr());
        if !p.is_null() {
            let pad = if (*p).data_type == PARAM_INTEGER {
                int(p).and_then(Padding::from_int)
            } else {
                text(p).as_deref().and_then(Padding::from_name)
            };
            c.pad = pad.ok_or_else(|| {
                ProviderError::Unsupported("RSA padding other than PKCS#1 v1.5 or PSS".into())
            })?;
        }
        let p = OSSL_PARAM_locate_const(params, c"saltlen".as_ptr());
        if !p.is_null() {
            c.salt = if (*p).data_type == PARAM_INTEGER {
                SaltLen::from_int(int(p).unwrap_or(i32::MIN))
            } else {
                SaltLen::from_name(&text(p).unwrap_or_default())
            };
        }
        let p = OSSL_PARAM_locate_const(params, c"mgf1-digest".as_ptr());
        if !p.is_null() {
            let name = text(p).unwrap_or_default();
            c.mgf1 = Some(
                Digest::parse(&name)
                    .ok_or_else(|| ProviderError::Unsupported(format!("MGF1 digest {name:?}")))?,
            );
        }
    }
    Ok(())
}

unsafe extern "C" fn sig_digest_sign_init(
    ctx: *mut c_void,
    mdname: *const c_char,
    keydata: *mut c_void,
    params: *const Param,
) -> c_int {
    guard(0, || {
        // SAFETY: `ctx` from `sig_new`, `keydata` a live key object or null
        // (re-init with the same key), `mdname` null or a C string.
        unsafe {
            let Some(c) = (ctx as *mut SigCtx).as_mut() else {
                return 0;
            };
            if !keydata.is_null() {
                // A public key imported for comparison cannot sign.
                let Some(o) = key_obj(keydata) else { return 0 };
                let Some(k) = o.remote.clone() else { return 0 };
                c.key = Some(k);
            }
            let Some(key) = c.key.clone() else { return 0 };
            c.buf.clear();
            c.pad = Padding::Pkcs1;
            c.salt = SaltLen::Digest;
            c.mgf1 = None;
            if let Some(name) = str_arg(mdname).filter(|n| !n.is_empty()) {
                match Digest::parse(name) {
                    Some(md) if scheme::digest_allowed(key.algorithm(), md) => c.md = md,
                    // No raise: libssl probes digests this way, a refusal is an answer.
                    _ => return 0,
                }
            } else {
                c.md = if key.algorithm() == conclave_keys::KeyAlgorithm::EcdsaP384 {
                    Digest::Sha384
                } else {
                    Digest::Sha256
                };
            }
            match apply_params(c, params) {
                Ok(()) => 1,
                Err(e) => {
                    raise(&e, c"digest_sign_init");
                    0
                }
            }
        }
    })
}

unsafe extern "C" fn sig_set_params(ctx: *mut c_void, params: *const Param) -> c_int {
    guard(0, || {
        // SAFETY: `ctx` from `sig_new`; `params` END-terminated.
        unsafe {
            let Some(c) = (ctx as *mut SigCtx).as_mut() else {
                return 0;
            };
            match apply_params(c, params) {
                Ok(()) => 1,
                Err(e) => {
                    raise(&e, c"set_ctx_params");
                    0
                }
            }
        }
    })
}

unsafe extern "C" fn sig_settable(_ctx: *mut c_void, _provctx: *mut c_void) -> *const Param {
    SIG_SETTABLE.0.as_ptr()
}

unsafe extern "C" fn sig_update(ctx: *mut c_void, data: *const u8, len: usize) -> c_int {
    guard(0, || {
        // SAFETY: `ctx` from `sig_new`; `data` readable for `len` bytes.
        unsafe {
            let Some(c) = (ctx as *mut SigCtx).as_mut() else {
                return 0;
            };
            if len > 0 {
                if data.is_null() {
                    return 0;
                }
                c.buf.extend_from_slice(std::slice::from_raw_parts(data, len));
            }
        }
        1
    })
}

/// Signs `msg`, or reports the maximum length when `sig` is null.
///
/// # Safety
/// `sig` is null or writable for `sigsize` bytes; `siglen` is valid.
unsafe fn sign_into(c: &SigCtx, sig: *mut u8, siglen: *mut usize, sigsize: usize, msg: &[u8]) -> c_int {
    let Some(key) = c.key.as_ref() else { return 0 };
    if siglen.is_null() {
        return 0;
    }
    if sig.is_null() {
        // SAFETY: per the caller.
        unsafe { *siglen = key.max_signature_len() };
        return 1;
    }
    let result = scheme::scheme(key.algorithm(), c.md, c.pad, c.salt, c.mgf1)
        .and_then(|s| key.sign(s, msg))
        .and_then(|out| {
            if out.len() > sigsize {
                Err(ProviderError::BufferTooSmall {
                    have: sigsize,
                    need: out.len(),
                })
            } else {
                Ok(out)
            }
        });
    match result {
        Ok(out) => {
            // SAFETY: per the caller, `sig` has room for `sigsize >= out.len()`.
            unsafe {
                ptr::copy_nonoverlapping(out.as_ptr(), sig, out.len());
                *siglen = out.len();
            }
            1
        }
        Err(e) => {
            raise(&e, c"digest_sign");
            0
        }
    }
}

unsafe extern "C" fn sig_final(ctx: *mut c_void, sig: *mut u8, siglen: *mut usize, sigsize: usize) -> c_int {
    guard(0, || {
        // SAFETY: `ctx` from `sig_new`; the rest per OpenSSL's contract.
        unsafe {
            let Some(c) = (ctx as *const SigCtx).as_ref() else {
                return 0;
            };
            sign_into(c, sig, siglen, sigsize, &c.buf)
        }
    })
}

unsafe extern "C" fn sig_digest_sign(
    ctx: *mut c_void,
    sig: *mut u8,
    siglen: *mut usize,
    sigsize: usize,
    tbs: *const u8,
    tbslen: usize,
) -> c_int {
    guard(0, || {
        // SAFETY: `ctx` from `sig_new`; `tbs` readable for `tbslen` bytes.
        unsafe {
            let Some(c) = (ctx as *const SigCtx).as_ref() else {
                return 0;
            };
            let msg: &[u8] = if tbslen == 0 || tbs.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(tbs, tbslen)
            };
            sign_into(c, sig, siglen, sigsize, msg)
        }
    })
}
