//! The mapping from host I/O errors onto preview1 `errno` values (defined in
//! [`super::abi::errno`], re-exported here).
//!
//! The numbers are the wire values of the witx `errno` enum, which is *not*
//! the host's errno numbering, so host errors always go through [`from_io`].

use std::io;

pub use super::abi::errno::*;

/// Host (Linux) errno numbers that `std::io::ErrorKind` does not classify on
/// stable Rust (notably ELOOP), or classifies too coarsely for WASI.
#[cfg(target_os = "linux")]
fn from_linux_errno(code: i32) -> Option<Errno> {
    Some(match code {
        1 => EPERM,
        2 => ENOENT,
        4 => EINTR,
        5 => EIO,
        7 => E2BIG,
        9 => EBADF,
        11 => EAGAIN,
        12 => ENOMEM,
        13 => EACCES,
        14 => EFAULT,
        16 => EBUSY,
        17 => EEXIST,
        18 => EXDEV,
        20 => ENOTDIR,
        21 => EISDIR,
        22 => EINVAL,
        24 => EMFILE,
        26 => ETXTBSY,
        27 => EFBIG,
        28 => ENOSPC,
        29 => ESPIPE,
        30 => EROFS,
        31 => EMLINK,
        32 => EPIPE,
        36 => ENAMETOOLONG,
        39 => ENOTEMPTY,
        40 => ELOOP,
        75 => EOVERFLOW,
        84 => EILSEQ,
        95 => ENOTSUP,
        122 => EDQUOT,
        _ => return None,
    })
}

#[cfg(not(target_os = "linux"))]
fn from_linux_errno(_code: i32) -> Option<Errno> {
    None
}

/// Maps a host I/O error onto a WASI errno.
///
/// cap-std reports a sandbox escape (`..` above the preopen, an absolute path,
/// a symlink leading outside) as `PermissionDenied` *without* an OS errno; such a
/// bare `PermissionDenied` is EPERM, as wasmtime answers an escape, while a real
/// EACCES from the kernel keeps its meaning.
pub fn from_io(error: &io::Error) -> Errno {
    if let Some(errno) = error.raw_os_error().and_then(from_linux_errno) {
        return errno;
    }
    use io::ErrorKind as K;
    match error.kind() {
        K::NotFound => ENOENT,
        K::PermissionDenied => {
            if error.raw_os_error().is_some() {
                EACCES
            } else {
                EPERM
            }
        }
        K::AlreadyExists => EEXIST,
        K::NotADirectory => ENOTDIR,
        K::IsADirectory => EISDIR,
        K::DirectoryNotEmpty => ENOTEMPTY,
        K::ReadOnlyFilesystem => EROFS,
        K::InvalidInput => EINVAL,
        K::InvalidData => EILSEQ,
        K::Interrupted => EINTR,
        K::WouldBlock => EAGAIN,
        K::BrokenPipe => EPIPE,
        K::StorageFull => ENOSPC,
        K::FileTooLarge => EFBIG,
        K::NotSeekable => ESPIPE,
        K::CrossesDevices => EXDEV,
        K::TooManyLinks => EMLINK,
        K::ResourceBusy => EBUSY,
        K::ExecutableFileBusy => ETXTBSY,
        K::Unsupported => ENOTSUP,
        K::OutOfMemory => ENOMEM,
        _ => EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_error_without_os_code_is_eperm_as_in_wasmtime() {
        let escape = io::Error::new(io::ErrorKind::PermissionDenied, "outside");
        assert_eq!(from_io(&escape), EPERM);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn os_codes_map_through_the_table() {
        assert_eq!(from_io(&io::Error::from_raw_os_error(40)), ELOOP);
        assert_eq!(from_io(&io::Error::from_raw_os_error(13)), EACCES);
        assert_eq!(from_io(&io::Error::from_raw_os_error(2)), ENOENT);
        assert_eq!(from_io(&io::Error::from_raw_os_error(20)), ENOTDIR);
    }
}
