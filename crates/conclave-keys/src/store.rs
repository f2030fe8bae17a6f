//! The key store: private keys loaded once at start from one directory
//! (`NAME.key`, PEM: PKCS#8, PKCS#1 or SEC1), held only in this process, and
//! looked up by exact name. Nothing a client sends ever becomes a path.

use crate::algorithm::KeyAlgorithm;
use crate::error::KeysError;
use crate::name::KeyName;
use rustls::sign::SigningKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroize;

/// One loaded private key.
#[derive(Clone)]
pub struct StoredKey {
    /// Its name (the file stem).
    pub name: KeyName,
    /// Type and size.
    pub algorithm: KeyAlgorithm,
    /// The public key as SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// The private key, inside aws-lc-rs.
    pub key: Arc<dyn SigningKey>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    /// Parses one PEM private key and checks that it is a type we serve.
    pub fn from_pem(name: KeyName, pem: &[u8], origin: &Path) -> Result<StoredKey, KeysError> {
        let load = |reason: String| KeysError::Load {
            path: origin.to_path_buf(),
            reason,
        };
        let mut der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| load(format!("no PEM private key: {e}")))?;
        let provider = conclave_rpc::tls::provider();
        let loaded = provider.key_provider.load_private_key(der.clone_key());
        der.zeroize();
        let key = loaded.map_err(|e| load(format!("not a usable private key: {e}")))?;
        let spki = key
            .public_key()
            .ok_or_else(|| load("the key has no public half rustls can export".into()))?
            .as_ref()
            .to_vec();
        let algorithm = KeyAlgorithm::from_spki(&spki).map_err(|e| load(e.to_string()))?;
        if key.algorithm() != algorithm.signature_algorithm() {
            return Err(load("key type and public key disagree".into()));
        }
        Ok(StoredKey {
            name,
            algorithm,
            spki,
            key,
        })
    }
}

/// Every key the server may use, by name.
#[derive(Default, Debug)]
pub struct KeyStore {
    keys: BTreeMap<KeyName, StoredKey>,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every `*.key` file of `dir`. A file whose stem is not a valid
    /// key name, or that holds a key type we do not serve, is an error: the
    /// operator meant it to be served.
    pub fn load_dir(dir: &Path) -> Result<KeyStore, KeysError> {
        let io = |source| KeysError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut store = KeyStore::new();
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        paths.sort();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("key") || !path.is_file() {
                continue;
            }
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let name = KeyName::new(stem).map_err(|e| KeysError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            // Refused when group or others may read it (conclave_secret).
            let pem = conclave_secret::read_private(&path).map_err(|e| KeysError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            store.insert(StoredKey::from_pem(name, &pem, &path)?);
        }
        Ok(store)
    }

    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: StoredKey) {
        self.keys.insert(key.name.clone(), key);
    }

    /// The key called `name`, by exact match.
    pub fn get(&self, name: &str) -> Option<&StoredKey> {
        self.keys.get(name)
    }

    /// Every key, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &StoredKey> {
        self.keys.values()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
