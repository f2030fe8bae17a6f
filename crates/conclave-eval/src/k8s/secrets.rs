//! One Secret per part, holding exactly what `up` puts in that part's
//! directory (see [`crate::layout`]): its identity, and the site key only
//! in the signer's (the key server's when keyless). Random secrets (image,
//! ticket sealing) are made here once; the file holding these objects is
//! kept across renderings (see [`super::Manifests::write`]).

use super::Names;
use crate::deploy::{Deployment, Device, SharedKind};
use crate::layout::{self, Part, RunDir};
use crate::{plan, EvalError};
use conclave_rpc::pki::CertsLayout;
use conclave_rpc::{Identity, Role, Tenant};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// Where a file of a part's Secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file of the part's identity directory (`conclave certs` layout).
    Identity(Identity, String),
    /// The site certificate.
    SiteCert,
    /// The site key (wherever `certs` or an earlier `up` left it).
    SiteKey,
    /// 32 random bytes, hex.
    Random,
}

/// One file of a part's Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecretFile {
    /// The Secret's key.
    pub key: String,
    /// Its path under the part's directory.
    pub path: String,
    /// Its content's origin.
    pub source: Source,
}

impl SecretFile {
    fn new(path: &str, source: Source) -> SecretFile {
        SecretFile {
            key: path.replace('/', "-"),
            path: path.into(),
            source,
        }
    }
}

/// The name of a part's Secret.
pub(crate) fn secret_name(n: &Names, part: Part) -> String {
    n.name(&format!("{}-identity", part.name()))
}

fn identity_of(d: &Deployment, part: Part) -> Option<Identity> {
    match part {
        Part::Edge => Some(d.edge_identity()),
        other => layout::role(other).map(|r: Role| Identity::new(r, Tenant::default())),
    }
}

/// The key servers' ticket-key secret, in their directory.
pub(crate) const TICKET_KEYS: &str = "ticket.keys";

/// What a part's directory holds, as `up` lays it out.
pub(crate) fn files(d: &Deployment, part: Part) -> Vec<SecretFile> {
    let mut out: Vec<SecretFile> = Vec::new();
    if let Some(id) = identity_of(d, part) {
        for f in CertsLayout::identity_files(id.role) {
            out.push(SecretFile::new(&f, Source::Identity(id.clone(), f.clone())));
        }
    }
    let keyless = layout::keyless(d);
    match part {
        Part::Edge => {
            out.push(SecretFile::new(CertsLayout::SITE_CERT, Source::SiteCert));
            if !keyless {
                out.push(SecretFile::new(CertsLayout::SITE_KEY, Source::SiteKey));
            }
            // With key servers the fleet's ticket keys come from them
            // (`ticket_source = "keyserver"`): no edge holds a ticket secret.
            if !keyless && d.edge.shared == SharedKind::Smdish && d.memserver.is_some() {
                out.push(SecretFile::new("ticket.secret", Source::Random));
            }
            if d.edge.shared == SharedKind::Smc {
                out.push(SecretFile::new("smc.secret", Source::Random));
            }
        }
        Part::KeyServer => {
            out.push(SecretFile::new(
                &format!("keys/{}", CertsLayout::SITE_KEY),
                Source::SiteKey,
            ));
            // The fleet's ticket-key secret: every replica derives the same
            // per-epoch keys from it (`--ticket-keys`, docs/fleet-runtime.md).
            out.push(SecretFile::new(TICKET_KEYS, Source::Random));
        }
        Part::FileServer => {
            if d.fileserver.as_ref().is_some_and(|f| f.device != Device::Std) {
                out.push(SecretFile::new("fs.secret", Source::Random));
            }
        }
        Part::MemServer | Part::Origin => {}
    }
    out
}

fn random_hex() -> Result<String, EvalError> {
    use std::io::Read;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    let rnd = std::path::Path::new("/dev/urandom");
    std::fs::File::open(rnd)
        .and_then(|mut f| f.read_exact(&mut bytes[..]))
        .map_err(EvalError::io(rnd))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The site key's file: in `certs/site/`, or where `up` moved it.
fn site_key_path(d: &Deployment) -> Result<PathBuf, EvalError> {
    let run = RunDir::of(d);
    let candidates = [
        CertsLayout::new(&d.certs).site_key(),
        run.site_key_path(true),
        run.site_key_path(false),
    ];
    candidates.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        EvalError::Config(format!(
            "no site key: expected {} (made by `conclave certs`)",
            candidates[0].display()
        ))
    })
}

fn read(path: PathBuf) -> Result<String, EvalError> {
    std::fs::read_to_string(&path).map_err(EvalError::io(path))
}

/// The Secrets of every part the fleet runs, read from the deployment's
/// certificates (made like `up` makes them when missing).
pub(crate) fn secrets(
    d: &Deployment,
    n: &Names,
    parts: &super::objects::Parts,
) -> Result<Vec<Value>, EvalError> {
    plan::ensure_certs(&d.certs)?;
    let layout_ = CertsLayout::new(&d.certs);
    let mut present = vec![Part::Edge];
    if parts.memserver.is_some() {
        present.push(Part::MemServer);
    }
    if parts.keyserver.is_some() {
        present.push(Part::KeyServer);
    }
    if parts.fileserver.is_some() {
        present.push(Part::FileServer);
    }
    let mut out = Vec::new();
    for part in present {
        let mut data = Map::new();
        for f in files(d, part) {
            let text = match &f.source {
                Source::Identity(id, name) => {
                    let dir = layout::ensure_identity(&d.certs, id)?;
                    read(dir.join(name))?
                }
                Source::SiteCert => read(layout_.site_cert())?,
                Source::SiteKey => read(site_key_path(d)?)?,
                Source::Random => random_hex()?,
            };
            data.insert(f.key, Value::String(text));
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name(n, part),
                "namespace": n.ns,
                "labels": super::objects::labels(n, part.name()),
            },
            "stringData": data,
        }));
    }
    Ok(out)
}
