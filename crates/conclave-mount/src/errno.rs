//! Which errno a program on the mount sees for a file-server failure.
//!
//! The server's replies already carry Linux errnos (ENOENT, EACCES for a
//! path outside the grants, ENOSPC...), passed through unchanged. Integrity
//! failures and transport failures become EIO, the errno every program
//! (NGINX: "open() failed (5: Input/output error)", a 500) treats as "this
//! storage cannot be trusted now" instead of a protocol detail it cannot act on.

use conclave_rpc::{RpcError, Status};
use std::io;

/// The errno for `e`, an error from [`conclave_fs::FsClient`] or its `File`.
pub fn errno_of(e: &io::Error) -> i32 {
    if let Some(code) = e.raw_os_error() {
        if code > 0 {
            return code;
        }
    }
    if let Some(inner) = e.get_ref() {
        if let Some(st) = inner.downcast_ref::<Status>() {
            return from_status(*st);
        }
        if let Some(rpc) = inner.downcast_ref::<RpcError>() {
            return from_status(rpc.status());
        }
    }
    match e.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        io::ErrorKind::NotADirectory => libc::ENOTDIR,
        io::ErrorKind::IsADirectory => libc::EISDIR,
        io::ErrorKind::DirectoryNotEmpty => libc::ENOTEMPTY,
        io::ErrorKind::StorageFull => libc::ENOSPC,
        _ => libc::EIO,
    }
}

fn from_status(st: Status) -> i32 {
    match st {
        // Integrity (verity/vericrypt MAC mismatch), malformed replies and a
        // broken connection: the bytes cannot be had, so EIO.
        Status::EBADMSG | Status::EBADE | Status::EPROTO | Status::EREMOTEIO => libc::EIO,
        Status(0) => libc::EIO,
        Status(n) => i32::try_from(n).unwrap_or(libc::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_rpc::Endpoint;

    #[test]
    fn server_statuses_pass_through_as_errnos() {
        for (st, want) in [
            (Status::ENOENT, libc::ENOENT),
            (Status::EACCES, libc::EACCES),
            (Status::ENOTEMPTY, libc::ENOTEMPTY),
            (Status::ENOSPC, libc::ENOSPC),
            (Status::EIO, libc::EIO),
            (Status(116), libc::ESTALE),
        ] {
            assert_eq!(errno_of(&st.into_io_error()), want, "{st}");
        }
    }

    #[test]
    fn integrity_and_transport_failures_are_eio() {
        assert_eq!(errno_of(&Status::EBADMSG.into_io_error()), libc::EIO);
        assert_eq!(errno_of(&Status::EPROTO.into_io_error()), libc::EIO);
        let closed = RpcError::Closed {
            endpoint: "tcp://127.0.0.1:1".parse::<Endpoint>().unwrap(),
        };
        assert_eq!(errno_of(&io::Error::from(closed)), libc::EIO);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(libc::EROFS)), libc::EROFS);
    }
}
