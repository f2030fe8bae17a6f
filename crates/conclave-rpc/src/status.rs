//! Reply status codes: 0 for success, otherwise a Linux errno, as in the
//! original servers, so a client can map each to `std::io::ErrorKind`.

use std::fmt;
use std::io;

/// The `code` of a reply frame: 0 or a positive Linux errno value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

macro_rules! statuses {
    ($($name:ident = $val:expr, $kind:ident, $text:expr;)*) => {
        impl Status {
            $(#[doc = $text] pub const $name: Status = Status($val);)*

            /// The symbolic errno name, or `"E?"` for a value we do not know.
            pub fn name(self) -> &'static str {
                match self.0 {
                    0 => "OK",
                    $($val => stringify!($name),)*
                    _ => "E?",
                }
            }

            /// A short human description.
            pub fn description(self) -> &'static str {
                match self.0 {
                    0 => "success",
                    $($val => $text,)*
                    _ => "unknown error",
                }
            }

            /// The `std::io::ErrorKind` a client should report for this status.
            pub fn io_kind(self) -> io::ErrorKind {
                match self.0 {
                    $($val => io::ErrorKind::$kind,)*
                    _ => io::ErrorKind::Other,
                }
            }
        }
    };
}

statuses! {
    EPERM = 1, PermissionDenied, "operation not permitted";
    ENOENT = 2, NotFound, "no such file or directory";
    EIO = 5, Other, "input/output error (integrity check failed or device error)";
    E2BIG = 7, InvalidInput, "frame or argument too large";
    EBADF = 9, InvalidInput, "bad file descriptor";
    EAGAIN = 11, WouldBlock, "resource temporarily unavailable";
    ENOMEM = 12, OutOfMemory, "out of memory";
    EACCES = 13, PermissionDenied, "permission denied";
    EBUSY = 16, ResourceBusy, "resource busy";
    EEXIST = 17, AlreadyExists, "file exists";
    EXDEV = 18, CrossesDevices, "cross-device link";
    ENOTDIR = 20, NotADirectory, "not a directory";
    EISDIR = 21, IsADirectory, "is a directory";
    EINVAL = 22, InvalidInput, "invalid argument";
    EMFILE = 24, Other, "too many open files";
    EFBIG = 27, FileTooLarge, "file too large";
    ENOSPC = 28, StorageFull, "no space left on device";
    ESPIPE = 29, InvalidInput, "illegal seek";
    EMLINK = 31, TooManyLinks, "too many links";
    ERANGE = 34, InvalidInput, "result out of range";
    EDEADLK = 35, Deadlock, "resource deadlock avoided";
    ENAMETOOLONG = 36, InvalidFilename, "file name too long";
    ENOSYS = 38, Unsupported, "unknown operation";
    ENOTEMPTY = 39, DirectoryNotEmpty, "directory not empty";
    ELOOP = 40, Other, "too many levels of symbolic links";
    EBADE = 52, InvalidData, "invalid exchange (segment type or integrity mismatch)";
    EPROTO = 71, InvalidData, "protocol error (malformed frame or field)";
    EBADMSG = 74, InvalidData, "bad message (authentication failed)";
    EOVERFLOW = 75, InvalidInput, "value too large for defined data type";
    ENOTSUP = 95, Unsupported, "operation not supported";
    ETIMEDOUT = 110, TimedOut, "timed out";
    EREMOTEIO = 121, Other, "remote I/O error (transport failure)";
    EDQUOT = 122, QuotaExceeded, "disk quota exceeded";
}

impl Status {
    /// Success.
    pub const OK: Status = Status(0);

    /// True for the success status.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// The status that best describes a local I/O error, so servers can pass
    /// errors from the host through as errnos.
    pub fn from_io_error(e: &io::Error) -> Status {
        if let Some(code) = e.raw_os_error() {
            if code > 0 {
                return Status(code as u32);
            }
        }
        match e.kind() {
            io::ErrorKind::NotFound => Status::ENOENT,
            io::ErrorKind::PermissionDenied => Status::EACCES,
            io::ErrorKind::AlreadyExists => Status::EEXIST,
            io::ErrorKind::InvalidInput => Status::EINVAL,
            io::ErrorKind::InvalidData => Status::EPROTO,
            io::ErrorKind::TimedOut => Status::ETIMEDOUT,
            io::ErrorKind::WouldBlock => Status::EAGAIN,
            io::ErrorKind::Unsupported => Status::ENOSYS,
            io::ErrorKind::OutOfMemory => Status::ENOMEM,
            io::ErrorKind::UnexpectedEof => Status::EPROTO,
            _ => Status::EIO,
        }
    }

    /// An `io::Error` carrying this status, for clients shaped like `std::fs`.
    pub fn into_io_error(self) -> io::Error {
        io::Error::new(self.io_kind(), self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.0, self.description())
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({}={})", self.name(), self.0)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds_match_linux_errnos() {
        assert_eq!(Status::ENOSYS.0, libc::ENOSYS as u32);
        assert_eq!(Status::EPROTO.0, libc::EPROTO as u32);
        assert_eq!(Status::E2BIG.0, libc::E2BIG as u32);
        assert_eq!(Status::ENOTEMPTY.0, libc::ENOTEMPTY as u32);
        assert_eq!(Status::EBADE.0, libc::EBADE as u32);
        assert_eq!(Status::ENOENT.name(), "ENOENT");
        assert_eq!(Status::ENOENT.io_kind(), io::ErrorKind::NotFound);
        assert_eq!(Status(9999).name(), "E?");
        assert!(Status::OK.is_ok());
    }

    #[test]
    fn io_errors_map_to_errnos() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Status::from_io_error(&e), Status::ENOSPC);
        let e = io::Error::new(io::ErrorKind::NotFound, "x");
        assert_eq!(Status::from_io_error(&e), Status::ENOENT);
    }
}
