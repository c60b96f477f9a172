//! The `path_*` calls: opening, creating, removing, renaming and linking beneath a
//! directory fd, symlinks, and stats and times by path.
//!
//! Sandboxing is delegated to cap-std: every path a guest supplies is resolved by a
//! `cap_std::fs::Dir` that refuses to leave its directory (`..` above it, absolute paths,
//! symlinks pointing outside). Nothing here normalises guest paths; the one place that
//! names a host path at all is `path_filestat_set_times`, through cap-fs-ext, which resolves
//! it the same way.
//!
//! Read-only preopens are enforced here, not by the host filesystem: every fd derived from
//! a read-only preopen is read-only too, and each call that could change anything beneath
//! one answers EPERM, as wasmtime does.

use std::fs::File;
use std::time::{Duration, UNIX_EPOCH};

use cap_fs_ext::{DirExt, SystemTimeSpec};
use cap_std::fs::{Dir, OpenOptions};
use cap_std::time::SystemTime;

use super::abi::errno::{
    Errno, EEXIST, EILSEQ, EINVAL, EISDIR, ELOOP, ENAMETOOLONG, ENOENT, ENOTDIR, ENOTSUP, EPERM,
};
use super::abi::{fdflags, layout, oflags, rights, LOOKUPFLAGS_SYMLINK_FOLLOW};
use super::errno;
use super::fds::{DirFd, FdEntry, FdTable, FileFd, Filestat};
use super::memory::GuestMemory;

/// Longest path accepted from a guest (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: u32 = 4096;

/// The calls that change one name beneath a directory.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DirChange {
    CreateDir,
    RemoveDir,
    UnlinkFile,
}

/// What `path_open` was asked for.
pub(crate) struct OpenRequest {
    pub(crate) dirflags: u32,
    pub(crate) oflags: u16,
    pub(crate) rights_base: u64,
    pub(crate) fdflags: u16,
}

impl FdTable {
    fn writable_dir(&self, fd: u32) -> Result<&Dir, Errno> {
        let dir = self.dir(fd)?;
        if !dir.writable {
            return Err(EPERM);
        }
        Ok(&dir.dir)
    }

    pub(crate) fn path_open(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: u32,
        path: (u32, u32),
        req: &OpenRequest,
        fd_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(fd_ptr, 4)?;
        let parent = match self.get(dirfd)? {
            FdEntry::Dir(dir) => dir,
            FdEntry::File(_) => return Err(ENOTDIR),
            _ => return Err(super::abi::errno::EBADF),
        };
        let path = read_path(mem, path.0, path.1)?;
        if req.oflags & !oflags::ALL != 0 {
            return Err(EINVAL);
        }
        let creat = req.oflags & oflags::CREAT != 0;
        let excl = req.oflags & oflags::EXCL != 0;
        let trunc = req.oflags & oflags::TRUNC != 0;
        let directory = req.oflags & oflags::DIRECTORY != 0;
        let read = req.rights_base & rights::FD_READ != 0;
        let write = req.rights_base & rights::FD_WRITE != 0;
        let append = req.fdflags & fdflags::APPEND != 0;
        let nonblock = req.fdflags & fdflags::NONBLOCK != 0;
        if req.fdflags & (fdflags::DSYNC | fdflags::RSYNC | fdflags::SYNC) != 0 {
            // As wasmtime: synchronous I/O is not offered.
            return Err(ENOTSUP);
        }
        if !parent.writable && (creat || trunc || write) {
            return Err(EPERM);
        }
        // A trailing slash asks for a directory and follows a symlink, O_NOFOLLOW or not.
        if req.dirflags & LOOKUPFLAGS_SYMLINK_FOLLOW == 0 && !path.ends_with('/') {
            // O_NOFOLLOW for the last component. A race with a concurrent rename can at
            // worst follow a link cap-std still confines, so this check is about POSIX
            // behaviour, not safety.
            if let Ok(meta) = parent.dir.symlink_metadata(&path) {
                if meta.file_type().is_symlink() {
                    return Err(if creat && excl { EEXIST } else { ELOOP });
                }
            }
        }
        let writable = parent.writable;
        let entry = if directory {
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
                readable: read,
                listing: None,
            })
        } else {
            let file = open_file(&parent.dir, &path, read, write, creat, excl, trunc)?;
            let meta = file.metadata().map_err(|e| errno::from_io(&e))?;
            if meta.is_dir() {
                // wasi-libc's open() may omit O_DIRECTORY for a directory; creating one
                // that exists is EISDIR, as POSIX has it.
                if write || trunc || creat {
                    return Err(EISDIR);
                }
                FdEntry::Dir(DirFd {
                    dir: Dir::from_std_file(file),
                    preopen: None,
                    writable,
                    readable: read,
                    listing: None,
                })
            } else {
                FdEntry::File(FileFd {
                    file,
                    readable: read,
                    writable: write,
                    append,
                    nonblock,
                    in_writable_dir: writable,
                })
            }
        };
        let fd = self.insert(entry)?;
        mem.write_u32(fd_ptr, fd)
    }

    /// `path_create_directory`, `path_remove_directory`, `path_unlink_file`.
    pub(crate) fn change_at(
        &self,
        mem: &GuestMemory<'_>,
        fd: u32,
        path: (u32, u32),
        change: DirChange,
    ) -> Result<(), Errno> {
        let dir = self.writable_dir(fd)?;
        let path = read_path(mem, path.0, path.1)?;
        match change {
            DirChange::CreateDir => dir.create_dir(&path),
            DirChange::RemoveDir => dir.remove_dir(&path),
            DirChange::UnlinkFile => dir.remove_file(&path),
        }
        .map_err(|e| errno::from_io(&e))
    }

    pub(crate) fn path_rename(
        &self,
        mem: &GuestMemory<'_>,
        fd: u32,
        from: (u32, u32),
        to_fd: u32,
        to: (u32, u32),
    ) -> Result<(), Errno> {
        let src = self.writable_dir(fd)?;
        let dst = self.writable_dir(to_fd)?;
        let from = read_path(mem, from.0, from.1)?;
        let to = read_path(mem, to.0, to.1)?;
        if from.ends_with('/') || to.ends_with('/') {
            // A trailing slash on either name says "directory"; cap-std drops it.
            let meta = src
                .symlink_metadata(&from)
                .map_err(|e| errno::from_io(&e))?;
            if !meta.is_dir() {
                return Err(ENOTDIR);
            }
        }
        src.rename(&from, dst, &to).map_err(|e| errno::from_io(&e))
    }

    pub(crate) fn path_link(
        &self,
        mem: &GuestMemory<'_>,
        fd: u32,
        lookupflags: u32,
        from: (u32, u32),
        to_fd: u32,
        to: (u32, u32),
    ) -> Result<(), Errno> {
        // As wasmtime: both directories must be writable (a link made from a read-only
        // preopen would let its file be changed through the new name).
        let src = self.writable_dir(fd)?;
        let dst = self.writable_dir(to_fd)?;
        let from = read_path(mem, from.0, from.1)?;
        let to = read_path(mem, to.0, to.1)?;
        if lookupflags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            // As wasmtime: linking to what a symlink points at is not offered.
            return Err(EINVAL);
        }
        src.hard_link(&from, dst, &to)
            .map_err(|e| errno::from_io(&e))
    }

    pub(crate) fn path_symlink(
        &self,
        mem: &GuestMemory<'_>,
        target: (u32, u32),
        fd: u32,
        link: (u32, u32),
    ) -> Result<(), Errno> {
        let dir = self.writable_dir(fd)?;
        let target = read_string(mem, target.0, target.1)?;
        let link = read_path(mem, link.0, link.1)?;
        dir.symlink(&target, &link).map_err(|e| errno::from_io(&e))
    }

    pub(crate) fn path_readlink(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        path: (u32, u32),
        buf: u32,
        buf_len: u32,
        used_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(used_ptr, 4)?;
        let dir = &self.dir(fd)?.dir;
        let path = read_path(mem, path.0, path.1)?;
        let target = dir
            .read_link_contents(&path)
            .map_err(|e| errno::from_io(&e))?;
        let bytes = target.into_os_string().into_encoded_bytes();
        let n = bytes
            .len()
            .min(usize::try_from(buf_len).unwrap_or(usize::MAX));
        let out = bytes.get(..n).unwrap_or_default();
        mem.write_bytes(buf, out)?;
        mem.write_u32(used_ptr, u32::try_from(n).map_err(|_| EINVAL)?)
    }

    pub(crate) fn path_filestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        lookupflags: u32,
        path: (u32, u32),
        ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(ptr, layout::FILESTAT_SIZE)?;
        let dir = &self.dir(fd)?.dir;
        let path = read_path(mem, path.0, path.1)?;
        // A trailing slash follows a symlink, as in POSIX.
        let meta = if lookupflags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 || path.ends_with('/') {
            dir.metadata(&path)
        } else {
            dir.symlink_metadata(&path)
        }
        .map_err(|e| errno::from_io(&e))?;
        if path.ends_with('/') && !meta.is_dir() {
            // A trailing slash says "directory"; cap-std drops it.
            return Err(ENOTDIR);
        }
        Filestat::of(&meta, &mut self.inodes).write(mem, ptr)
    }

    #[allow(clippy::too_many_arguments)] // mirrors the preview1 signature
    pub(crate) fn path_filestat_set_times(
        &self,
        mem: &GuestMemory<'_>,
        fd: u32,
        lookupflags: u32,
        path: (u32, u32),
        atim: u64,
        mtim: u64,
        flags: u16,
    ) -> Result<(), Errno> {
        let (atime, mtime) = time_specs(atim, mtim, flags)?;
        let dir = self.writable_dir(fd)?;
        let path = read_path(mem, path.0, path.1)?;
        let result = if lookupflags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            dir.set_times(&path, atime, mtime)
        } else {
            dir.set_symlink_times(&path, atime, mtime)
        };
        result.map_err(|e| errno::from_io(&e))
    }
}

/// atim/mtim as cap-fs-ext's time specs: left alone, a time, or now; a time and now at
/// once is EINVAL.
fn time_specs(
    atim: u64,
    mtim: u64,
    flags: u16,
) -> Result<(Option<SystemTimeSpec>, Option<SystemTimeSpec>), Errno> {
    use super::abi::fstflags;
    if flags & !fstflags::ALL != 0 {
        return Err(EINVAL);
    }
    let pick = |set: u16, now: u16, ns: u64| -> Result<Option<SystemTimeSpec>, Errno> {
        match (flags & set != 0, flags & now != 0) {
            (true, true) => Err(EINVAL),
            (true, false) => UNIX_EPOCH
                .checked_add(Duration::from_nanos(ns))
                .map(|t| Some(SystemTimeSpec::Absolute(SystemTime::from_std(t))))
                .ok_or(EINVAL),
            (false, true) => Ok(Some(SystemTimeSpec::SymbolicNow)),
            (false, false) => Ok(None),
        }
    };
    Ok((
        pick(fstflags::ATIM, fstflags::ATIM_NOW, atim)?,
        pick(fstflags::MTIM, fstflags::MTIM_NOW, mtim)?,
    ))
}

fn open_file(
    dir: &Dir,
    path: &str,
    read: bool,
    write: bool,
    creat: bool,
    excl: bool,
    trunc: bool,
) -> Result<File, Errno> {
    let open = |options: &OpenOptions| {
        dir.open_with(path, options)
            .map(cap_std::fs::File::into_std)
            .map_err(|e| errno::from_io(&e))
    };
    // std refuses create/truncate without write access, but POSIX allows O_CREAT on an
    // existing file opened read-only; try that first so a read-only host file is still
    // readable.
    if creat && !excl && !trunc && !write {
        match open(OpenOptions::new().read(true)) {
            Err(ENOENT) => {}
            other => return other,
        }
    }
    let mut options = OpenOptions::new();
    options
        .read(read || !write)
        .write(write || creat || trunc)
        .truncate(trunc)
        .create(creat && !excl)
        .create_new(creat && excl);
    open(&options)
}

/// Copies a guest string out of memory: UTF-8, no NUL.
fn read_string(mem: &GuestMemory<'_>, ptr: u32, len: u32) -> Result<String, Errno> {
    if len > MAX_PATH_LEN {
        return Err(ENAMETOOLONG);
    }
    let bytes = mem.slice(ptr, len)?;
    let s = std::str::from_utf8(bytes).map_err(|_| EILSEQ)?;
    if s.contains('\0') {
        return Err(EINVAL);
    }
    Ok(s.to_owned())
}

/// Copies a guest path out of memory, rejecting what cap-std should never see.
fn read_path(mem: &GuestMemory<'_>, ptr: u32, len: u32) -> Result<String, Errno> {
    let path = read_string(mem, ptr, len)?;
    if path.is_empty() {
        return Err(ENOENT);
    }
    // cap-std refuses these too; answering early gives a stable errno.
    if path.starts_with('/') {
        return Err(EPERM);
    }
    Ok(path)
}
