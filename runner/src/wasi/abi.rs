//! The preview1 ABI in one place: errno values, rights, flags, file types, enum values and
//! the layouts of the structs the guest and host exchange, all as
//! `wasi_snapshot_preview1.witx` defines them.
//!
//! These are wire values, not the host's: a host errno or file type always goes through a
//! mapping (`errno::from_io`, `dirs::filetype_of`).

/// `errno` (the witx enum is `u16`).
pub mod errno {
    /// A preview1 errno as the guest sees it.
    pub type Errno = u16;

    pub const SUCCESS: Errno = 0;
    pub const E2BIG: Errno = 1;
    pub const EACCES: Errno = 2;
    pub const EAGAIN: Errno = 6;
    pub const EBADF: Errno = 8;
    pub const EBUSY: Errno = 10;
    pub const EDQUOT: Errno = 19;
    pub const EEXIST: Errno = 20;
    pub const EFAULT: Errno = 21;
    pub const EFBIG: Errno = 22;
    pub const EILSEQ: Errno = 25;
    pub const EINTR: Errno = 27;
    pub const EINVAL: Errno = 28;
    pub const EIO: Errno = 29;
    pub const EISDIR: Errno = 31;
    pub const ELOOP: Errno = 32;
    pub const EMFILE: Errno = 33;
    pub const EMLINK: Errno = 34;
    pub const ENAMETOOLONG: Errno = 37;
    pub const ENOENT: Errno = 44;
    pub const ENOMEM: Errno = 48;
    pub const ENOSPC: Errno = 51;
    pub const ENOSYS: Errno = 52;
    pub const ENOTDIR: Errno = 54;
    pub const ENOTEMPTY: Errno = 55;
    pub const ENOTSOCK: Errno = 57;
    pub const ENOTSUP: Errno = 58;
    pub const EOVERFLOW: Errno = 61;
    pub const EPERM: Errno = 63;
    pub const EPIPE: Errno = 64;
    pub const EROFS: Errno = 69;
    pub const ESPIPE: Errno = 70;
    pub const ETXTBSY: Errno = 74;
    pub const EXDEV: Errno = 75;
    pub const ENOTCAPABLE: Errno = 76;
}

/// `rights` (u64 flags).
pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    pub const PATH_LINK_SOURCE: u64 = 1 << 11;
    pub const PATH_LINK_TARGET: u64 = 1 << 12;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_READLINK: u64 = 1 << 15;
    pub const PATH_RENAME_SOURCE: u64 = 1 << 16;
    pub const PATH_RENAME_TARGET: u64 = 1 << 17;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub const PATH_SYMLINK: u64 = 1 << 24;
    pub const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    pub const PATH_UNLINK_FILE: u64 = 1 << 26;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;
    pub const SOCK_SHUTDOWN: u64 = 1 << 28;
    pub const SOCK_ACCEPT: u64 = 1 << 29;
    /// Every right the witx defines.
    pub const ALL: u64 = (1 << 30) - 1;

    /// What a preopened directory reports (wasmtime reports the same fixed set, whether
    /// the preopen is writable or not: its permissions are checked per call).
    pub const PREOPEN_BASE: u64 = PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_LINK_SOURCE
        | PATH_LINK_TARGET
        | PATH_OPEN
        | FD_READDIR
        | PATH_READLINK
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_SYMLINK
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_TIMES
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_TIMES;
    pub const PREOPEN_INHERITING: u64 = PREOPEN_BASE
        | FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES
        | POLL_FD_READWRITE;
}

/// `filetype` (u8).
pub mod filetype {
    pub const UNKNOWN: u8 = 0;
    pub const BLOCK_DEVICE: u8 = 1;
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SOCKET_STREAM: u8 = 6;
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// `fdflags` (u16).
pub mod fdflags {
    pub const APPEND: u16 = 1 << 0;
    pub const DSYNC: u16 = 1 << 1;
    pub const NONBLOCK: u16 = 1 << 2;
    pub const RSYNC: u16 = 1 << 3;
    pub const SYNC: u16 = 1 << 4;
    pub const ALL: u16 = (1 << 5) - 1;
}

/// `oflags` (u16).
pub mod oflags {
    pub const CREAT: u16 = 1 << 0;
    pub const DIRECTORY: u16 = 1 << 1;
    pub const EXCL: u16 = 1 << 2;
    pub const TRUNC: u16 = 1 << 3;
    pub const ALL: u16 = (1 << 4) - 1;
}

/// `lookupflags` (u32).
pub const LOOKUPFLAGS_SYMLINK_FOLLOW: u32 = 1;

/// `fstflags` (u16).
pub mod fstflags {
    pub const ATIM: u16 = 1 << 0;
    pub const ATIM_NOW: u16 = 1 << 1;
    pub const MTIM: u16 = 1 << 2;
    pub const MTIM_NOW: u16 = 1 << 3;
    pub const ALL: u16 = (1 << 4) - 1;
}

/// `whence` (u8).
pub mod whence {
    pub const SET: u32 = 0;
    pub const CUR: u32 = 1;
    pub const END: u32 = 2;
}

/// `advice` (u8): normal, sequential, random, willneed, dontneed, noreuse.
pub const ADVICE_MAX: u32 = 5;

/// `clockid` (u32).
pub mod clockid {
    pub const REALTIME: u32 = 0;
    pub const MONOTONIC: u32 = 1;
    pub const PROCESS_CPUTIME_ID: u32 = 2;
    pub const THREAD_CPUTIME_ID: u32 = 3;
}

/// `eventtype` (u8).
pub mod eventtype {
    pub const CLOCK: u8 = 0;
    pub const FD_READ: u8 = 1;
    pub const FD_WRITE: u8 = 2;
}

/// `eventrwflags` (u16).
pub const EVENTRWFLAGS_HANGUP: u16 = 1;
/// `subclockflags` (u16).
pub const SUBCLOCKFLAGS_ABSTIME: u16 = 1;

/// Struct sizes and field offsets.
pub mod layout {
    /// `fdstat`: filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting @16.
    pub const FDSTAT_SIZE: u32 = 24;
    /// `prestat`: tag u8 @0 (0 = dir), pr_name_len u32 @4.
    pub const PRESTAT_SIZE: u32 = 8;
    /// `filestat`: dev @0, ino @8, filetype u8 @16, nlink @24, size @32, atim @40,
    /// mtim @48, ctim @56.
    pub const FILESTAT_SIZE: u32 = 64;
    /// `dirent`: d_next u64 @0, d_ino u64 @8, d_namlen u32 @16, d_type u8 @20.
    pub const DIRENT_SIZE: usize = 24;
    /// `subscription`: userdata u64 @0, tag u8 @8, payload @16.
    pub const SUBSCRIPTION_SIZE: u32 = 48;
    pub const SUB_TAG: u32 = 8;
    pub const SUB_PAYLOAD: u32 = 16;
    /// `subscription_clock`: id u32 @0, timeout u64 @8, precision u64 @16, flags u16 @24.
    pub const CLOCK_ID: u32 = 0;
    pub const CLOCK_TIMEOUT: u32 = 8;
    pub const CLOCK_FLAGS: u32 = 24;
    /// `event`: userdata u64 @0, error u16 @8, type u8 @10, nbytes u64 @16, flags u16 @24.
    pub const EVENT_SIZE: u32 = 32;
    pub const EVENT_ERROR: u32 = 8;
    pub const EVENT_TYPE: u32 = 10;
    pub const EVENT_NBYTES: u32 = 16;
    pub const EVENT_FLAGS: u32 = 24;
}
