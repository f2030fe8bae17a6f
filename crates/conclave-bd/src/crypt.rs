//! The crypt device: AES-256-XTS per block. The image starts with one
//! header block (salt, KDF parameters, key check); data block `i` sits at
//! `(i + 1) * 4096`. Confidentiality only: a flipped bit decrypts to a
//! garbled block and is not detected.

use crate::header::{Header, Kdf, Role, HEADER_BYTES};
use crate::keys::{read_secret, CommitKeys, DeviceKeys};
use crate::std_device::{check_range, host_len, open_host_file};
use crate::xts::{decrypt_block, encrypt_block, Xts};
use crate::{BdError, BlockDevice, DeviceKind, DeviceSpec, BLOCK_SIZE};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An encrypted image: its header is block 0 of the file.
pub struct CryptDevice {
    file: File,
    blocks: u64,
    xts: Xts,
    read_only: bool,
}

/// Opens the header of an encrypted image (crypt or vericrypt) and derives
/// its keys; checks the secret, the header MAC and the file size.
pub(crate) fn open_encrypted_image(
    path: &Path,
    kind: DeviceKind,
    secret_file: &Path,
    read_only: bool,
) -> Result<(File, Header, DeviceKeys), BdError> {
    let what = path.display().to_string();
    let file = open_host_file(path, read_only)?;
    let len = host_len(&file)?;
    if len < HEADER_BYTES {
        return Err(BdError::Size {
            what,
            expected: HEADER_BYTES,
            found: len,
        });
    }
    let mut block = Box::new([0u8; BLOCK_SIZE]);
    file.read_exact_at(&mut block[..], 0)?;
    let header = Header::parse(&block, &what)?;
    if header.role != Role::Image || header.kind != kind {
        return Err(BdError::format(
            &what,
            format!(
                "header is for a {:?} of device {}, not an image of device {kind}",
                header.role, header.kind
            ),
        ));
    }
    let Kdf::Argon2id(params) = header.kdf else {
        return Err(BdError::format(&what, "image header has no key derivation"));
    };
    let secret = read_secret(secret_file)?;
    let keys = DeviceKeys::derive(&secret, &header.salt, &params)?;
    header.verify(&block, &keys, &what)?;
    let expected = HEADER_BYTES + header.blocks * BLOCK_SIZE as u64;
    if len != expected {
        return Err(BdError::Size {
            what,
            expected,
            found: len,
        });
    }
    Ok((file, header, keys))
}

impl CryptDevice {
    /// Opens `spec.image` with `spec.secret_file`.
    pub fn open(spec: &DeviceSpec) -> Result<CryptDevice, BdError> {
        Ok(Self::open_keyed(spec)?.0)
    }

    /// [`CryptDevice::open`], also handing over the commit layer's keys.
    pub(crate) fn open_keyed(spec: &DeviceSpec) -> Result<(CryptDevice, CommitKeys), BdError> {
        let (file, header, keys) = open_encrypted_image(
            &spec.image,
            DeviceKind::Crypt,
            spec.secret_path()?,
            spec.read_only,
        )?;
        let dev = CryptDevice {
            file,
            blocks: header.blocks,
            xts: keys.xts,
            read_only: spec.read_only,
        };
        Ok((dev, keys.commit))
    }
}

impl BlockDevice for CryptDevice {
    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        self.file
            .read_exact_at(buf, HEADER_BYTES + idx * BLOCK_SIZE as u64)?;
        decrypt_block(&self.xts, idx, buf);
        Ok(())
    }

    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        if self.read_only {
            return Err(BdError::ReadOnly);
        }
        let mut ct = [0u8; BLOCK_SIZE];
        ct.copy_from_slice(buf);
        encrypt_block(&self.xts, idx, &mut ct);
        self.file
            .write_all_at(&ct, HEADER_BYTES + idx * BLOCK_SIZE as u64)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), BdError> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }
}
