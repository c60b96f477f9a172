//! The fd table, preopened directories and the fd_* / path_* calls.
//!
//! Sandboxing is delegated entirely to cap-std: every path a guest supplies is
//! resolved by a `cap_std::fs::Dir` that refuses to leave its directory (`..`
//! above it, absolute paths, symlinks pointing outside). Nothing here parses
//! or normalises guest paths beyond rejecting obviously malformed ones, so
//! there is no hand-written resolver to get wrong.
//!
//! Read-only preopens are enforced here, not by the host filesystem: every fd
//! derived from a read-only preopen is read-only too, and `path_open` is the
//! only call that could create, truncate or open for writing.

use super::errno::{
    self, Errno, EBADF, EEXIST, EILSEQ, EINVAL, EISDIR, ELOOP, EMFILE, ENAMETOOLONG, ENOENT,
    ENOTCAPABLE, ENOTDIR, EROFS, ESPIPE,
};
use super::memory::{iovec, offset, GuestMemory, MAX_IOVS};
use super::stdio::{OutputSink, StdinSource};
use super::{Preopen, WasiError};
use cap_std::fs::{Dir, File, FileType, FileTypeExt, Metadata, MetadataExt, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};

pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;

    /// Rights that modify data; never advertised on anything read-only.
    pub const WRITE_FAMILY: u64 = FD_WRITE
        | FD_DATASYNC
        | FD_SYNC
        | FD_ALLOCATE
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES;
    pub const FILE_COMMON: u64 =
        FD_SEEK | FD_TELL | FD_FILESTAT_GET | FD_ADVISE | POLL_FD_READWRITE;
    pub const DIR_READ: u64 = PATH_OPEN | FD_READDIR | PATH_FILESTAT_GET | FD_FILESTAT_GET;
    pub const DIR_WRITE: u64 = PATH_CREATE_FILE | PATH_CREATE_DIRECTORY;
}

pub const FILETYPE_UNKNOWN: u8 = 0;
pub const FILETYPE_BLOCK_DEVICE: u8 = 1;
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_DIRECTORY: u8 = 3;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const FILETYPE_SYMBOLIC_LINK: u8 = 7;

pub const FDFLAGS_APPEND: u16 = 1;
pub const OFLAGS_CREAT: u16 = 1;
pub const OFLAGS_DIRECTORY: u16 = 2;
pub const OFLAGS_EXCL: u16 = 4;
pub const OFLAGS_TRUNC: u16 = 8;
pub const LOOKUPFLAGS_SYMLINK_FOLLOW: u32 = 1;
pub const WHENCE_SET: u32 = 0;
pub const WHENCE_CUR: u32 = 1;
pub const WHENCE_END: u32 = 2;

/// Bounds host file descriptors a guest can hold open (the runner process
/// shares its own fd limit with every guest it runs).
pub const MAX_FDS: usize = 1024;
/// Longest path accepted from a guest (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: u32 = 4096;

const FDSTAT_SIZE: u32 = 24;
const PRESTAT_SIZE: u32 = 8;
const FILESTAT_SIZE: u32 = 64;
const DIRENT_HEADER_SIZE: usize = 24;

pub(crate) enum FdEntry {
    Stdin(StdinSource),
    Stdout(OutputSink),
    Stderr(OutputSink),
    Dir(DirFd),
    File(FileFd),
}

pub(crate) struct DirFd {
    dir: Dir,
    /// The guest-visible name if this fd is a preopen; only preopens answer
    /// `fd_prestat_get`, which is how wasi-libc discovers them.
    preopen: Option<String>,
    writable: bool,
    /// `fd_readdir` snapshot, taken at cookie 0 so that later cookies index a
    /// stable, sorted list.
    listing: Option<Vec<Listed>>,
}

pub(crate) struct FileFd {
    file: File,
    readable: bool,
    writable: bool,
    append: bool,
}

struct Listed {
    name: Vec<u8>,
    filetype: u8,
    ino: u64,
}

pub(crate) struct FdTable {
    entries: Vec<Option<FdEntry>>,
    /// Seeded runs must not observe host inode numbers, devices or times.
    hide_host_ids: bool,
}

/// Opens a preopen's host directory with ambient authority; this is the only
/// place ambient authority is used, and every guest path is resolved beneath
/// the resulting `Dir`.
pub(crate) fn open_preopen(preopen: &Preopen) -> Result<DirFd, WasiError> {
    if preopen.guest.contains('\0') {
        return Err(WasiError::PreopenGuestName {
            guest: preopen.guest.clone(),
            reason: "contains a NUL byte",
        });
    }
    if u32::try_from(preopen.guest.len()).is_err() {
        return Err(WasiError::PreopenGuestName {
            guest: preopen.guest.clone(),
            reason: "is too long",
        });
    }
    match std::fs::metadata(&preopen.host) {
        Ok(meta) if !meta.is_dir() => {
            return Err(WasiError::PreopenNotADirectory {
                host: preopen.host.clone(),
            });
        }
        Ok(_) => {}
        Err(source) => {
            return Err(WasiError::PreopenOpen {
                host: preopen.host.clone(),
                source,
            });
        }
    }
    let dir =
        Dir::open_ambient_dir(&preopen.host, cap_std::ambient_authority()).map_err(|source| {
            WasiError::PreopenOpen {
                host: preopen.host.clone(),
                source,
            }
        })?;
    Ok(DirFd {
        dir,
        preopen: Some(preopen.guest.clone()),
        writable: preopen.writable,
        listing: None,
    })
}

impl FdTable {
    pub(crate) fn new(
        stdin: StdinSource,
        stdout: OutputSink,
        stderr: OutputSink,
        preopens: Vec<DirFd>,
        hide_host_ids: bool,
    ) -> Self {
        let mut entries = vec![
            Some(FdEntry::Stdin(stdin)),
            Some(FdEntry::Stdout(stdout)),
            Some(FdEntry::Stderr(stderr)),
        ];
        entries.extend(preopens.into_iter().map(|d| Some(FdEntry::Dir(d))));
        Self {
            entries,
            hide_host_ids,
        }
    }

    fn get(&self, fd: u32) -> Result<&FdEntry, Errno> {
        let index = usize::try_from(fd).map_err(|_| EBADF)?;
        self.entries
            .get(index)
            .and_then(Option::as_ref)
            .ok_or(EBADF)
    }

    fn get_mut(&mut self, fd: u32) -> Result<&mut FdEntry, Errno> {
        let index = usize::try_from(fd).map_err(|_| EBADF)?;
        self.entries
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or(EBADF)
    }

    fn dir(&self, fd: u32) -> Result<&DirFd, Errno> {
        match self.get(fd)? {
            FdEntry::Dir(dir) => Ok(dir),
            _ => Err(ENOTDIR),
        }
    }

    /// Takes the lowest free fd, as POSIX does.
    fn insert(&mut self, entry: FdEntry) -> Result<u32, Errno> {
        let index = match self.entries.iter().position(Option::is_none) {
            Some(free) => {
                if let Some(slot) = self.entries.get_mut(free) {
                    *slot = Some(entry);
                }
                free
            }
            None => {
                if self.entries.len() >= MAX_FDS {
                    return Err(EMFILE);
                }
                self.entries.push(Some(entry));
                self.entries.len().saturating_sub(1)
            }
        };
        u32::try_from(index).map_err(|_| EMFILE)
    }

    pub(crate) fn close(&mut self, fd: u32) -> Result<(), Errno> {
        let index = usize::try_from(fd).map_err(|_| EBADF)?;
        match self.entries.get_mut(index) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(())
            }
            _ => Err(EBADF),
        }
    }

    pub(crate) fn prestat_get(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        let name = self.preopen_name(fd)?;
        let len = u32::try_from(name.len()).map_err(|_| ENAMETOOLONG)?;
        mem.slice_mut(ptr, PRESTAT_SIZE)?.fill(0);
        // prestat: tag u8 @0 (0 = dir), pr_name_len u32 @4.
        mem.write_u8(ptr, 0)?;
        mem.write_u32(offset(ptr, 4)?, len)
    }

    pub(crate) fn prestat_dir_name(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
        len: u32,
    ) -> Result<(), Errno> {
        let name = self.preopen_name(fd)?;
        let name_len = u32::try_from(name.len()).map_err(|_| ENAMETOOLONG)?;
        if len < name_len {
            return Err(ENAMETOOLONG);
        }
        mem.write_bytes(ptr, name.as_bytes())
    }

    fn preopen_name(&self, fd: u32) -> Result<&str, Errno> {
        match self.get(fd)? {
            FdEntry::Dir(DirFd {
                preopen: Some(name),
                ..
            }) => Ok(name),
            _ => Err(EBADF),
        }
    }

    pub(crate) fn fdstat_get(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        use rights::*;
        let (filetype, flags, base, inheriting) = match self.get(fd)? {
            FdEntry::Stdin(_) => (
                FILETYPE_CHARACTER_DEVICE,
                0,
                FD_READ | FD_FILESTAT_GET | POLL_FD_READWRITE,
                0,
            ),
            FdEntry::Stdout(_) | FdEntry::Stderr(_) => (
                FILETYPE_CHARACTER_DEVICE,
                0,
                FD_WRITE | FD_FILESTAT_GET | POLL_FD_READWRITE,
                0,
            ),
            FdEntry::Dir(dir) => {
                let (base, inheriting) = if dir.writable {
                    (
                        DIR_READ | DIR_WRITE,
                        DIR_READ | DIR_WRITE | FD_READ | FILE_COMMON | WRITE_FAMILY,
                    )
                } else {
                    (DIR_READ, DIR_READ | FD_READ | FILE_COMMON)
                };
                (FILETYPE_DIRECTORY, 0, base, inheriting)
            }
            FdEntry::File(file) => {
                let mut base = FILE_COMMON;
                if file.readable {
                    base |= FD_READ;
                }
                if file.writable {
                    base |= WRITE_FAMILY;
                }
                let flags = if file.append { FDFLAGS_APPEND } else { 0 };
                (FILETYPE_REGULAR_FILE, flags, base, 0)
            }
        };
        mem.slice_mut(ptr, FDSTAT_SIZE)?.fill(0);
        mem.write_u8(ptr, filetype)?;
        mem.write_u16(offset(ptr, 2)?, flags)?;
        mem.write_u64(offset(ptr, 8)?, base)?;
        mem.write_u64(offset(ptr, 16)?, inheriting)
    }

    pub(crate) fn read(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nread_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(nread_ptr, 4)?;
        validate_iovecs(mem, iovs, iovs_len)?;
        let mut total: u32 = 0;
        match self.get_mut(fd)? {
            FdEntry::Stdin(source) => {
                // A stream must not be asked for a second buffer once it has
                // delivered data: that read could block for input that the
                // guest does not need yet.
                for i in 0..iovs_len {
                    let (buf, len) = iovec(mem, iovs, i)?;
                    if len == 0 {
                        continue;
                    }
                    let n = retry(|| Ok(source.read(mem.slice_mut(buf, len)?)))?;
                    total = add_len(total, n)?;
                    break;
                }
            }
            FdEntry::File(FileFd {
                file,
                readable: true,
                ..
            }) => {
                for i in 0..iovs_len {
                    let (buf, len) = iovec(mem, iovs, i)?;
                    let n = retry(|| Ok(file.read(mem.slice_mut(buf, len)?)))?;
                    total = add_len(total, n)?;
                    if usize::try_from(len).map_or(true, |len| n < len) {
                        break;
                    }
                }
            }
            FdEntry::Dir(_) => return Err(EISDIR),
            _ => return Err(EBADF),
        }
        mem.write_u32(nread_ptr, total)
    }

    pub(crate) fn write(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nwritten_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(nwritten_ptr, 4)?;
        validate_iovecs(mem, iovs, iovs_len)?;
        let mut total: u32 = 0;
        match self.get_mut(fd)? {
            FdEntry::Stdout(sink) | FdEntry::Stderr(sink) => {
                let is_stderr = fd == 2;
                for i in 0..iovs_len {
                    let (buf, len) = iovec(mem, iovs, i)?;
                    let data = mem.slice(buf, len)?;
                    if let Err(error) = sink.write(data, is_stderr) {
                        if total == 0 {
                            return Err(errno::from_io(&error));
                        }
                        break;
                    }
                    total = add_len(total, data.len())?;
                }
            }
            FdEntry::File(FileFd {
                file,
                writable: true,
                ..
            }) => {
                'iovs: for i in 0..iovs_len {
                    let (buf, len) = iovec(mem, iovs, i)?;
                    let mut data = mem.slice(buf, len)?;
                    while !data.is_empty() {
                        match file.write(data) {
                            Ok(0) => break 'iovs,
                            Ok(n) => {
                                total = add_len(total, n)?;
                                data = data.get(n..).unwrap_or_default();
                            }
                            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                            // POSIX reports a partial write as success.
                            Err(_) if total > 0 => break 'iovs,
                            Err(error) => return Err(errno::from_io(&error)),
                        }
                    }
                }
            }
            FdEntry::Dir(_) => return Err(EISDIR),
            _ => return Err(EBADF),
        }
        mem.write_u32(nwritten_ptr, total)
    }

    pub(crate) fn seek(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        offset: i64,
        whence: u32,
        newoffset_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(newoffset_ptr, 8)?;
        let pos = match whence {
            WHENCE_SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| EINVAL)?),
            WHENCE_CUR => SeekFrom::Current(offset),
            WHENCE_END => SeekFrom::End(offset),
            _ => return Err(EINVAL),
        };
        let file = self.seekable(fd)?;
        let new = file.seek(pos).map_err(|e| errno::from_io(&e))?;
        mem.write_u64(newoffset_ptr, new)
    }

    pub(crate) fn tell(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(ptr, 8)?;
        let file = self.seekable(fd)?;
        let pos = file.stream_position().map_err(|e| errno::from_io(&e))?;
        mem.write_u64(ptr, pos)
    }

    fn seekable(&mut self, fd: u32) -> Result<&mut File, Errno> {
        match self.get_mut(fd)? {
            FdEntry::File(file) => Ok(&mut file.file),
            FdEntry::Stdin(_) | FdEntry::Stdout(_) | FdEntry::Stderr(_) => Err(ESPIPE),
            FdEntry::Dir(_) => Err(EBADF),
        }
    }

    pub(crate) fn filestat_get(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(ptr, FILESTAT_SIZE)?;
        let stat = match self.get(fd)? {
            FdEntry::Stdin(_) | FdEntry::Stdout(_) | FdEntry::Stderr(_) => Filestat {
                filetype: FILETYPE_CHARACTER_DEVICE,
                ..Filestat::default()
            },
            FdEntry::Dir(dir) => {
                self.stat(&dir.dir.dir_metadata().map_err(|e| errno::from_io(&e))?)
            }
            FdEntry::File(file) => {
                self.stat(&file.file.metadata().map_err(|e| errno::from_io(&e))?)
            }
        };
        stat.write(mem, ptr)
    }

    pub(crate) fn path_filestat_get(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        lookupflags: u32,
        path_ptr: u32,
        path_len: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(ptr, FILESTAT_SIZE)?;
        let path = read_path(mem, path_ptr, path_len)?;
        let dir = &self.dir(fd)?.dir;
        let meta = if lookupflags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            dir.metadata(&path)
        } else {
            dir.symlink_metadata(&path)
        }
        .map_err(|e| errno::from_io(&e))?;
        self.stat(&meta).write(mem, ptr)
    }

    fn stat(&self, meta: &Metadata) -> Filestat {
        let filetype = filetype_of(meta.file_type());
        if self.hide_host_ids {
            return Filestat {
                filetype,
                nlink: meta.nlink(),
                size: meta.size(),
                ..Filestat::default()
            };
        }
        Filestat {
            dev: meta.dev(),
            ino: meta.ino(),
            filetype,
            nlink: meta.nlink(),
            size: meta.size(),
            atim: timestamp(meta.atime(), meta.atime_nsec()),
            mtim: timestamp(meta.mtime(), meta.mtime_nsec()),
            ctim: timestamp(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// `fd_readdir`: entries are ".", ".." and then the directory's entries
    /// sorted by name bytes (host order is arbitrary and would make guest
    /// output differ between runs); the cookie is the index of the next entry.
    pub(crate) fn readdir(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        buf: u32,
        buf_len: u32,
        cookie: u64,
        bufused_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(bufused_ptr, 4)?;
        mem.check(buf, buf_len)?;
        let hide = self.hide_host_ids;
        let dir = match self.get_mut(fd)? {
            FdEntry::Dir(dir) => dir,
            _ => return Err(ENOTDIR),
        };
        if cookie == 0 || dir.listing.is_none() {
            dir.listing = Some(list_dir(&dir.dir, hide)?);
        }
        let listing = dir.listing.as_deref().unwrap_or_default();
        let out = mem.slice_mut(buf, buf_len)?;
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        let mut used = 0usize;
        'entries: for (index, entry) in listing.iter().enumerate().skip(start) {
            let namlen = u32::try_from(entry.name.len()).map_err(|_| ENAMETOOLONG)?;
            let next = u64::try_from(index.saturating_add(1)).unwrap_or(u64::MAX);
            let mut header = [0u8; DIRENT_HEADER_SIZE];
            header[0..8].copy_from_slice(&next.to_le_bytes());
            header[8..16].copy_from_slice(&entry.ino.to_le_bytes());
            header[16..20].copy_from_slice(&namlen.to_le_bytes());
            header[20] = entry.filetype;
            // The spec wants the buffer filled completely, truncating the last
            // entry; the caller sees bufused == buf_len and retries bigger.
            for chunk in [&header[..], &entry.name[..]] {
                let room = out.len().saturating_sub(used);
                let n = chunk.len().min(room);
                let end = used.saturating_add(n);
                if let (Some(dst), Some(src)) = (out.get_mut(used..end), chunk.get(..n)) {
                    dst.copy_from_slice(src);
                }
                used = end;
                if n < chunk.len() {
                    break 'entries;
                }
            }
        }
        let used = u32::try_from(used).map_err(|_| EINVAL)?;
        mem.write_u32(bufused_ptr, used)
    }

    #[allow(clippy::too_many_arguments)] // mirrors the preview1 signature
    pub(crate) fn path_open(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: u32,
        dirflags: u32,
        path_ptr: u32,
        path_len: u32,
        oflags: u16,
        rights_base: u64,
        fdflags: u16,
        fd_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(fd_ptr, 4)?;
        let path = read_path(mem, path_ptr, path_len)?;
        if oflags & !(OFLAGS_CREAT | OFLAGS_DIRECTORY | OFLAGS_EXCL | OFLAGS_TRUNC) != 0 {
            return Err(EINVAL);
        }
        let parent = self.dir(dirfd)?;
        let creat = oflags & OFLAGS_CREAT != 0;
        let excl = oflags & OFLAGS_EXCL != 0;
        let trunc = oflags & OFLAGS_TRUNC != 0;
        let append = fdflags & FDFLAGS_APPEND != 0;
        let write = rights_base & rights::FD_WRITE != 0 || append;
        if !parent.writable && (write || creat || trunc) {
            return Err(EROFS);
        }
        if dirflags & LOOKUPFLAGS_SYMLINK_FOLLOW == 0 {
            // O_NOFOLLOW semantics for the last component. A race with a
            // concurrent rename can at worst follow a link cap-std still
            // confines, so this check is about POSIX behaviour, not safety.
            if let Ok(meta) = parent.dir.symlink_metadata(&path) {
                if meta.file_type().is_symlink() {
                    return Err(if creat && excl { EEXIST } else { ELOOP });
                }
            }
        }
        let writable = parent.writable;
        let entry = if oflags & OFLAGS_DIRECTORY != 0 {
            if creat {
                return Err(EINVAL);
            }
            if write || trunc {
                return Err(EISDIR);
            }
            let dir = parent.dir.open_dir(&path).map_err(|e| errno::from_io(&e))?;
            FdEntry::Dir(DirFd {
                dir,
                preopen: None,
                writable,
                listing: None,
            })
        } else {
            let readable = rights_base & rights::FD_READ != 0 || !write;
            let request = FileRequest {
                readable,
                write,
                append,
                creat,
                excl,
                trunc,
            };
            let file = open_file(&parent.dir, &path, &request)?;
            let meta = file.metadata().map_err(|e| errno::from_io(&e))?;
            if meta.is_dir() {
                // wasi-libc's open() may omit O_DIRECTORY for a directory.
                if write {
                    return Err(EISDIR);
                }
                FdEntry::Dir(DirFd {
                    dir: Dir::from_std_file(file.into_std()),
                    preopen: None,
                    writable,
                    listing: None,
                })
            } else {
                FdEntry::File(FileFd {
                    file,
                    readable,
                    writable: write,
                    append,
                })
            }
        };
        let fd = self.insert(entry)?;
        mem.write_u32(fd_ptr, fd)
    }
}

struct FileRequest {
    readable: bool,
    write: bool,
    append: bool,
    creat: bool,
    excl: bool,
    trunc: bool,
}

fn open_file(dir: &Dir, path: &str, req: &FileRequest) -> Result<File, Errno> {
    let open = |options: &OpenOptions| dir.open_with(path, options).map_err(|e| errno::from_io(&e));
    // std refuses create/truncate without write access, but POSIX allows
    // O_CREAT on an existing file opened read-only; try that first so a
    // read-only host file is still readable.
    if req.creat && !req.excl && !req.trunc && !req.write {
        match open(OpenOptions::new().read(true)) {
            Err(ENOENT) => {}
            other => return other,
        }
    }
    let mut options = OpenOptions::new();
    options
        .read(req.readable)
        .write(req.write || req.creat || req.trunc)
        .append(req.append)
        .truncate(req.trunc)
        .create(req.creat && !req.excl)
        .create_new(req.creat && req.excl);
    open(&options)
}

fn list_dir(dir: &Dir, hide: bool) -> Result<Vec<Listed>, Errno> {
    let io_err = |e: io::Error| errno::from_io(&e);
    let self_ino = if hide {
        0
    } else {
        dir.dir_metadata().map(|m| m.ino()).unwrap_or(0)
    };
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let filetype = entry
            .file_type()
            .map(filetype_of)
            .unwrap_or(FILETYPE_UNKNOWN);
        let ino = if hide {
            0
        } else {
            entry.metadata().map(|m| m.ino()).unwrap_or(0)
        };
        entries.push(Listed {
            name: entry.file_name().into_encoded_bytes(),
            filetype,
            ino,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    // ".." of a preopen lies outside the sandbox, so its inode is not reported.
    let dots = [(&b"."[..], self_ino), (&b".."[..], 0)].map(|(name, ino)| Listed {
        name: name.to_vec(),
        filetype: FILETYPE_DIRECTORY,
        ino,
    });
    Ok(dots.into_iter().chain(entries).collect())
}

fn filetype_of(ft: FileType) -> u8 {
    if ft.is_dir() {
        FILETYPE_DIRECTORY
    } else if ft.is_file() {
        FILETYPE_REGULAR_FILE
    } else if ft.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if ft.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if ft.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if ft.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        FILETYPE_UNKNOWN
    }
}

fn timestamp(secs: i64, nsec: i64) -> u64 {
    let secs = u64::try_from(secs).unwrap_or(0);
    let nsec = u64::try_from(nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

#[derive(Default)]
struct Filestat {
    dev: u64,
    ino: u64,
    filetype: u8,
    nlink: u64,
    size: u64,
    atim: u64,
    mtim: u64,
    ctim: u64,
}

impl Filestat {
    /// preview1 `filestat`: dev @0, ino @8, filetype u8 @16, nlink @24,
    /// size @32, atim @40, mtim @48, ctim @56; 64 bytes.
    fn write(&self, mem: &mut GuestMemory<'_>, ptr: u32) -> Result<(), Errno> {
        mem.slice_mut(ptr, FILESTAT_SIZE)?.fill(0);
        mem.write_u64(ptr, self.dev)?;
        mem.write_u64(offset(ptr, 8)?, self.ino)?;
        mem.write_u8(offset(ptr, 16)?, self.filetype)?;
        mem.write_u64(offset(ptr, 24)?, self.nlink)?;
        mem.write_u64(offset(ptr, 32)?, self.size)?;
        mem.write_u64(offset(ptr, 40)?, self.atim)?;
        mem.write_u64(offset(ptr, 48)?, self.mtim)?;
        mem.write_u64(offset(ptr, 56)?, self.ctim)
    }
}

/// Copies a guest path out of memory, rejecting what cap-std should never see.
fn read_path(mem: &GuestMemory<'_>, ptr: u32, len: u32) -> Result<String, Errno> {
    if len > MAX_PATH_LEN {
        return Err(ENAMETOOLONG);
    }
    let bytes = mem.slice(ptr, len)?;
    let path = std::str::from_utf8(bytes).map_err(|_| EILSEQ)?;
    if path.is_empty() {
        return Err(ENOENT);
    }
    if path.contains('\0') {
        return Err(EINVAL);
    }
    // cap-std refuses these too; answering early gives a stable errno.
    if path.starts_with('/') {
        return Err(ENOTCAPABLE);
    }
    Ok(path.to_owned())
}

/// Checks the iovec array and every buffer it names before any I/O happens,
/// so a bad pointer cannot surface after data was already consumed.
fn validate_iovecs(mem: &GuestMemory<'_>, iovs: u32, iovs_len: u32) -> Result<(), Errno> {
    if iovs_len > MAX_IOVS {
        return Err(EINVAL);
    }
    let mut total: u32 = 0;
    for i in 0..iovs_len {
        let (buf, len) = iovec(mem, iovs, i)?;
        mem.check(buf, len)?;
        // The result count is a u32, so the request must fit one too.
        total = total.checked_add(len).ok_or(EINVAL)?;
    }
    Ok(())
}

fn add_len(total: u32, n: usize) -> Result<u32, Errno> {
    u32::try_from(n)
        .ok()
        .and_then(|n| total.checked_add(n))
        .ok_or(EINVAL)
}

fn retry(mut op: impl FnMut() -> Result<io::Result<usize>, Errno>) -> Result<usize, Errno> {
    loop {
        match op()? {
            Ok(n) => return Ok(n),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(errno::from_io(&error)),
        }
    }
}
