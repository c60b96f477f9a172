//! The fd table and the `fd_*` calls that work on an open descriptor: reads, writes,
//! positions, stats, sizes, times, flags, rights, renumbering and closing.
//!
//! Numbers are handed out as wasmtime's preview1 does, so that a program sees the same fds
//! under both: a closed number is reused, the highest first; otherwise one past the
//! highest in use. Each call answers the errno wasmtime's answers for the kind of
//! descriptor it is given (EBADF for a call that needs a file and gets a directory or a
//! stream, ESPIPE for positioning a stream).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, FileTimes};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_std::fs::{Dir, Metadata, MetadataExt};

use super::abi::errno::{
    Errno, EBADF, EINVAL, EMFILE, ENAMETOOLONG, ENOTDIR, ENOTSUP, EOVERFLOW, ESPIPE,
};
use super::abi::{fdflags, filetype, fstflags, layout, rights, whence};
use super::dirs::filetype_of;
use super::errno;
use super::memory::{iovec, offset, GuestMemory, MAX_IOVS};
use super::stdio::{OutputSink, StdinSource};

/// Bounds host file descriptors a guest can hold open (the runner process shares its own
/// fd limit with every guest it runs).
pub const MAX_FDS: usize = 1024;

pub(crate) enum FdEntry {
    Stdin(StdinSource),
    Stdout(OutputSink),
    Stderr(OutputSink),
    Dir(DirFd),
    File(FileFd),
}

pub(crate) struct DirFd {
    pub(crate) dir: Dir,
    /// The guest-visible name if this fd is a preopen; only preopens answer
    /// `fd_prestat_get`, which is how wasi-libc discovers them.
    pub(crate) preopen: Option<String>,
    /// May the guest change anything beneath this directory (`--dir-rw`)? Inherited by
    /// every directory and file opened through it.
    pub(crate) writable: bool,
    pub(crate) readable: bool,
    /// `fd_readdir` snapshot, taken at cookie 0 so that later cookies index a stable,
    /// sorted list.
    pub(crate) listing: Option<Vec<super::dirs::Listed>>,
}

pub(crate) struct FileFd {
    pub(crate) file: File,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Tracked here rather than as the host's O_APPEND so `fd_fdstat_set_flags` can change
    /// it: every write goes to the end while it is set.
    pub(crate) append: bool,
    pub(crate) nonblock: bool,
    /// Opened beneath a `--dir-rw` preopen: only then may its times change.
    pub(crate) in_writable_dir: bool,
}

pub(crate) struct FdTable {
    entries: BTreeMap<u32, FdEntry>,
    free: BTreeSet<u32>,
    pub(crate) inodes: Inodes,
}

/// What the guest sees of host devices and inode numbers. Seeded runs must not observe
/// host ids (nor times), yet a program may compare inode numbers to tell files apart: each
/// host file gets the next number, 1, 2, …, the first time the guest sees it, all on
/// device 1, so that reruns see the same numbers and distinct files distinct ones.
pub(crate) struct Inodes {
    seeded: Option<std::collections::HashMap<(u64, u64), u64>>,
}

impl Inodes {
    pub(crate) fn new(hide_host_ids: bool) -> Self {
        Self {
            seeded: hide_host_ids.then(std::collections::HashMap::new),
        }
    }

    pub(crate) fn hides_host_ids(&self) -> bool {
        self.seeded.is_some()
    }

    /// (dev, ino) as the guest sees them.
    pub(crate) fn guest_ids(&mut self, dev: u64, ino: u64) -> (u64, u64) {
        match &mut self.seeded {
            None => (dev, ino),
            Some(ids) => {
                let next = u64::try_from(ids.len())
                    .unwrap_or(u64::MAX)
                    .saturating_add(1);
                (1, *ids.entry((dev, ino)).or_insert(next))
            }
        }
    }
}

impl FdTable {
    pub(crate) fn new(
        stdin: StdinSource,
        stdout: OutputSink,
        stderr: OutputSink,
        preopens: Vec<DirFd>,
        hide_host_ids: bool,
    ) -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(0, FdEntry::Stdin(stdin));
        entries.insert(1, FdEntry::Stdout(stdout));
        entries.insert(2, FdEntry::Stderr(stderr));
        for (fd, dir) in (3u32..).zip(preopens) {
            entries.insert(fd, FdEntry::Dir(dir));
        }
        Self {
            entries,
            free: BTreeSet::new(),
            inodes: Inodes::new(hide_host_ids),
        }
    }

    pub(crate) fn get(&self, fd: u32) -> Result<&FdEntry, Errno> {
        self.entries.get(&fd).ok_or(EBADF)
    }

    pub(crate) fn get_mut(&mut self, fd: u32) -> Result<&mut FdEntry, Errno> {
        self.entries.get_mut(&fd).ok_or(EBADF)
    }

    /// A directory fd, mutably, beside the inode numbering (for `fd_readdir`).
    pub(crate) fn dir_and_inodes(&mut self, fd: u32) -> Result<(&mut DirFd, &mut Inodes), Errno> {
        match self.entries.get_mut(&fd) {
            Some(FdEntry::Dir(dir)) => Ok((dir, &mut self.inodes)),
            _ => Err(EBADF),
        }
    }

    /// A directory fd for a `path_*` call: anything else is EBADF.
    pub(crate) fn dir(&self, fd: u32) -> Result<&DirFd, Errno> {
        match self.get(fd)? {
            FdEntry::Dir(dir) => Ok(dir),
            _ => Err(EBADF),
        }
    }

    fn file(&self, fd: u32) -> Result<&FileFd, Errno> {
        match self.get(fd)? {
            FdEntry::File(file) => Ok(file),
            _ => Err(EBADF),
        }
    }

    fn file_mut(&mut self, fd: u32) -> Result<&mut FileFd, Errno> {
        match self.get_mut(fd)? {
            FdEntry::File(file) => Ok(file),
            _ => Err(EBADF),
        }
    }

    /// A file for `fd_seek`/`fd_tell`: streams cannot seek.
    fn seekable(&self, fd: u32) -> Result<&FileFd, Errno> {
        match self.get(fd)? {
            FdEntry::File(file) => Ok(file),
            FdEntry::Stdin(_) | FdEntry::Stdout(_) | FdEntry::Stderr(_) => Err(ESPIPE),
            FdEntry::Dir(_) => Err(EBADF),
        }
    }

    pub(crate) fn insert(&mut self, entry: FdEntry) -> Result<u32, Errno> {
        if self.entries.len() >= MAX_FDS {
            return Err(EMFILE);
        }
        let fd = match self.free.pop_last() {
            Some(fd) => fd,
            None => match self.entries.last_key_value() {
                Some((&last, _)) => last.checked_add(1).ok_or(EMFILE)?,
                None => 0,
            },
        };
        self.entries.insert(fd, entry);
        Ok(fd)
    }

    pub(crate) fn close(&mut self, fd: u32) -> Result<(), Errno> {
        self.entries.remove(&fd).ok_or(EBADF)?;
        self.free.insert(fd);
        Ok(())
    }

    /// `fd_renumber(from, to)`: both must be open; `to` is closed and `from` takes its
    /// number.
    pub(crate) fn renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        if !self.entries.contains_key(&to) || !self.entries.contains_key(&from) {
            return Err(EBADF);
        }
        if from != to {
            let entry = self.entries.remove(&from).ok_or(EBADF)?;
            self.entries.insert(to, entry);
            self.free.insert(from);
            self.free.remove(&to);
        }
        Ok(())
    }

    pub(crate) fn prestat_get(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        let name = match self.get(fd)? {
            FdEntry::Dir(DirFd {
                preopen: Some(name),
                ..
            }) => name,
            _ => return Err(EBADF),
        };
        let len = u32::try_from(name.len()).map_err(|_| ENAMETOOLONG)?;
        mem.slice_mut(ptr, layout::PRESTAT_SIZE)?.fill(0);
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
        let name = match self.get(fd)? {
            FdEntry::Dir(DirFd {
                preopen: Some(name),
                ..
            }) => name,
            _ => return Err(ENOTDIR),
        };
        let name_len = u32::try_from(name.len()).map_err(|_| ENAMETOOLONG)?;
        if len < name_len {
            return Err(ENAMETOOLONG);
        }
        mem.write_bytes(ptr, name.as_bytes())
    }

    pub(crate) fn fdstat_get(
        &self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(ptr, layout::FDSTAT_SIZE)?;
        let (ftype, flags, base, inheriting) = match self.get(fd)? {
            FdEntry::Stdin(source) => {
                let ftype = stream_filetype(source.is_terminal());
                (ftype, 0, rights::FD_READ, rights::FD_READ)
            }
            FdEntry::Stdout(sink) | FdEntry::Stderr(sink) => {
                let ftype = stream_filetype(sink.is_terminal(fd == 2));
                (ftype, 0, rights::FD_WRITE, rights::FD_WRITE)
            }
            FdEntry::Dir(DirFd {
                preopen: Some(_), ..
            }) => (
                filetype::DIRECTORY,
                0,
                rights::PREOPEN_BASE,
                rights::PREOPEN_INHERITING,
            ),
            FdEntry::Dir(dir) => {
                let mut base = rights::ALL
                    & !(rights::FD_SEEK
                        | rights::FD_FILESTAT_SET_SIZE
                        | rights::PATH_FILESTAT_SET_SIZE
                        | rights::FD_WRITE);
                if !dir.readable {
                    base &= !(rights::FD_READ | rights::FD_READDIR);
                }
                (filetype::DIRECTORY, 0, base, base)
            }
            FdEntry::File(file) => {
                let mut base = rights::ALL;
                if !file.readable {
                    base &= !(rights::FD_READ | rights::FD_READDIR);
                }
                if !file.writable {
                    base &= !rights::FD_WRITE;
                }
                let mut flags = 0;
                if file.append {
                    flags |= fdflags::APPEND;
                }
                if file.nonblock {
                    flags |= fdflags::NONBLOCK;
                }
                let ftype = file
                    .file
                    .metadata()
                    .map(|m| filetype_of(Metadata::from_just_metadata(m).file_type()))
                    .map_err(|e| errno::from_io(&e))?;
                (ftype, flags, base, base)
            }
        };
        mem.slice_mut(ptr, layout::FDSTAT_SIZE)?.fill(0);
        mem.write_u8(ptr, ftype)?;
        mem.write_u16(offset(ptr, 2)?, flags)?;
        mem.write_u64(offset(ptr, 8)?, base)?;
        mem.write_u64(offset(ptr, 16)?, inheriting)
    }

    /// Only APPEND and NONBLOCK can change, and only on a file; the sync flags are EINVAL.
    pub(crate) fn fdstat_set_flags(&mut self, fd: u32, flags: u16) -> Result<(), Errno> {
        let file = self.file_mut(fd)?;
        if flags & (fdflags::DSYNC | fdflags::SYNC | fdflags::RSYNC) != 0 {
            return Err(EINVAL);
        }
        file.append = flags & fdflags::APPEND != 0;
        file.nonblock = flags & fdflags::NONBLOCK != 0;
        Ok(())
    }

    /// wasmtime's preview1 does not change rights: ENOTSUP on a file or directory, EBADF
    /// on anything else.
    pub(crate) fn fdstat_set_rights(&self, fd: u32) -> Result<(), Errno> {
        match self.get(fd)? {
            FdEntry::File(_) | FdEntry::Dir(_) => Err(ENOTSUP),
            _ => Err(EBADF),
        }
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
        let (buf, len) = first_non_empty(mem, iovs, iovs_len)?;
        let n = match self.get_mut(fd)? {
            FdEntry::Stdin(source) => retry(|| Ok(source.read(mem.slice_mut(buf, len)?)))?,
            FdEntry::File(file) => {
                let mut f = &file.file;
                retry(|| Ok(f.read(mem.slice_mut(buf, len)?)))?
            }
            _ => return Err(EBADF),
        };
        mem.write_u32(nread_ptr, count(n)?)
    }

    pub(crate) fn pread(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        at: u64,
        nread_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(nread_ptr, 4)?;
        let (buf, len) = first_non_empty(mem, iovs, iovs_len)?;
        let n = match self.get(fd)? {
            FdEntry::File(file) => retry(|| Ok(file.file.read_at(mem.slice_mut(buf, len)?, at)))?,
            FdEntry::Stdin(_) => return Err(ESPIPE),
            _ => return Err(EBADF),
        };
        mem.write_u32(nread_ptr, count(n)?)
    }

    pub(crate) fn write(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        at: Option<u64>,
        nwritten_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(nwritten_ptr, 4)?;
        validate_iovecs(mem, iovs, iovs_len)?;
        let mut total: u32 = 0;
        match self.get_mut(fd)? {
            FdEntry::Stdout(sink) | FdEntry::Stderr(sink) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
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
            FdEntry::File(file) => {
                let mut f = &file.file;
                let mut position = match (file.append, at) {
                    // Linux pwrite ignores the offset of a file opened for appending.
                    (true, _) => f.seek(SeekFrom::End(0)).map_err(|e| errno::from_io(&e))?,
                    (false, Some(at)) => at,
                    (false, None) => f.stream_position().map_err(|e| errno::from_io(&e))?,
                };
                'iovs: for i in 0..iovs_len {
                    let (buf, len) = iovec(mem, iovs, i)?;
                    let mut data = mem.slice(buf, len)?;
                    while !data.is_empty() {
                        match f.write_at(data, position) {
                            Ok(0) => break 'iovs,
                            Ok(n) => {
                                total = add_len(total, n)?;
                                position = position
                                    .checked_add(u64::try_from(n).map_err(|_| EOVERFLOW)?)
                                    .ok_or(EOVERFLOW)?;
                                data = data.get(n..).unwrap_or_default();
                            }
                            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                            // POSIX reports a partial write as success.
                            Err(_) if total > 0 => break 'iovs,
                            Err(error) => return Err(errno::from_io(&error)),
                        }
                    }
                }
                if at.is_none() {
                    f.seek(SeekFrom::Start(position))
                        .map_err(|e| errno::from_io(&e))?;
                }
            }
            _ => return Err(EBADF),
        }
        mem.write_u32(nwritten_ptr, total)
    }

    pub(crate) fn seek(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        delta: i64,
        whence: u32,
        newoffset_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(newoffset_ptr, 8)?;
        let mut file = &self.seekable(fd)?.file;
        let io_err = |e: io::Error| errno::from_io(&e);
        let target = match whence {
            whence::SET => u64::try_from(delta).map_err(|_| EINVAL)?,
            whence::CUR => file
                .stream_position()
                .map_err(io_err)?
                .checked_add_signed(delta)
                .ok_or(EINVAL)?,
            whence::END => file
                .metadata()
                .map_err(io_err)?
                .len()
                .checked_add_signed(delta)
                .ok_or(EINVAL)?,
            _ => return Err(EINVAL),
        };
        let new = file.seek(SeekFrom::Start(target)).map_err(io_err)?;
        mem.write_u64(newoffset_ptr, new)
    }

    pub(crate) fn tell(&self, mem: &mut GuestMemory<'_>, fd: u32, ptr: u32) -> Result<(), Errno> {
        mem.check(ptr, 8)?;
        let mut file = &self.seekable(fd)?.file;
        let pos = file.stream_position().map_err(|e| errno::from_io(&e))?;
        mem.write_u64(ptr, pos)
    }

    pub(crate) fn advise(&self, fd: u32, _offset: u64, _len: u64) -> Result<(), Errno> {
        // Advice is only advice: the file must exist, nothing else changes.
        self.file(fd).map(|_| ())
    }

    pub(crate) fn allocate(&self, fd: u32) -> Result<(), Errno> {
        self.file(fd)?;
        Err(ENOTSUP)
    }

    pub(crate) fn sync(&self, fd: u32, data_only: bool) -> Result<(), Errno> {
        let file = &self.file(fd)?.file;
        let result = if data_only {
            file.sync_data()
        } else {
            file.sync_all()
        };
        result.map_err(|e| errno::from_io(&e))
    }

    pub(crate) fn filestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(ptr, layout::FILESTAT_SIZE)?;
        let stat = match self.get(fd)? {
            FdEntry::Stdin(source) => Filestat {
                filetype: stream_filetype(source.is_terminal()),
                ..Filestat::default()
            },
            FdEntry::Stdout(sink) | FdEntry::Stderr(sink) => Filestat {
                filetype: stream_filetype(sink.is_terminal(fd == 2)),
                ..Filestat::default()
            },
            FdEntry::Dir(dir) => {
                let meta = dir.dir.dir_metadata().map_err(|e| errno::from_io(&e))?;
                Filestat::of(&meta, &mut self.inodes)
            }
            FdEntry::File(file) => {
                let meta = file.file.metadata().map_err(|e| errno::from_io(&e))?;
                Filestat::of(&Metadata::from_just_metadata(meta), &mut self.inodes)
            }
        };
        stat.write(mem, ptr)
    }

    pub(crate) fn filestat_set_size(&self, fd: u32, size: u64) -> Result<(), Errno> {
        let file = self.file(fd)?;
        if !file.in_writable_dir {
            return Err(super::errno::EPERM);
        }
        // A file not opened for writing: the host answers (EINVAL on Linux), as wasmtime's.
        file.file.set_len(size).map_err(|e| errno::from_io(&e))
    }

    pub(crate) fn filestat_set_times(
        &self,
        fd: u32,
        atim: u64,
        mtim: u64,
        flags: u16,
    ) -> Result<(), Errno> {
        let times = new_times(atim, mtim, flags)?;
        match self.get(fd)? {
            FdEntry::File(file) => {
                if !file.in_writable_dir {
                    return Err(super::errno::EPERM);
                }
                file.file.set_times(times).map_err(|e| errno::from_io(&e))
            }
            FdEntry::Dir(dir) => {
                if !dir.writable {
                    return Err(super::errno::EPERM);
                }
                let handle = dir.dir.try_clone().map_err(|e| errno::from_io(&e))?;
                let std_dir = File::from(std::os::fd::OwnedFd::from(handle));
                std_dir.set_times(times).map_err(|e| errno::from_io(&e))
            }
            _ => Err(EBADF),
        }
    }
}

fn stream_filetype(terminal: bool) -> u8 {
    // As wasmtime: a terminal is a character device, a pipe or file behind a stream is
    // of no type the guest could use.
    if terminal {
        filetype::CHARACTER_DEVICE
    } else {
        filetype::UNKNOWN
    }
}

/// The new times for `*_set_times`: each of atim/mtim is left alone, set to the given
/// time, or set to now; asking for both a time and now is EINVAL.
pub(crate) fn new_times(atim: u64, mtim: u64, flags: u16) -> Result<FileTimes, Errno> {
    if flags & !fstflags::ALL != 0 {
        return Err(EINVAL);
    }
    let pick = |set: u16, now: u16, ns: u64| -> Result<Option<SystemTime>, Errno> {
        match (flags & set != 0, flags & now != 0) {
            (true, true) => Err(EINVAL),
            (true, false) => UNIX_EPOCH
                .checked_add(Duration::from_nanos(ns))
                .map(Some)
                .ok_or(EOVERFLOW),
            (false, true) => Ok(Some(SystemTime::now())),
            (false, false) => Ok(None),
        }
    };
    let mut times = FileTimes::new();
    if let Some(t) = pick(fstflags::ATIM, fstflags::ATIM_NOW, atim)? {
        times = times.set_accessed(t);
    }
    if let Some(t) = pick(fstflags::MTIM, fstflags::MTIM_NOW, mtim)? {
        times = times.set_modified(t);
    }
    Ok(times)
}

fn timestamp(secs: i64, nsec: i64) -> u64 {
    let secs = u64::try_from(secs).unwrap_or(0);
    let nsec = u64::try_from(nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

#[derive(Default)]
pub(crate) struct Filestat {
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
    pub(crate) fn of(meta: &Metadata, inodes: &mut Inodes) -> Self {
        let filetype = filetype_of(meta.file_type());
        let (dev, ino) = inodes.guest_ids(meta.dev(), meta.ino());
        if inodes.hides_host_ids() {
            return Self {
                dev,
                ino,
                filetype,
                nlink: meta.nlink(),
                size: meta.size(),
                ..Self::default()
            };
        }
        Self {
            dev,
            ino,
            filetype,
            nlink: meta.nlink(),
            size: meta.size(),
            atim: timestamp(meta.atime(), meta.atime_nsec()),
            mtim: timestamp(meta.mtime(), meta.mtime_nsec()),
            ctim: timestamp(meta.ctime(), meta.ctime_nsec()),
        }
    }

    pub(crate) fn write(&self, mem: &mut GuestMemory<'_>, ptr: u32) -> Result<(), Errno> {
        mem.slice_mut(ptr, layout::FILESTAT_SIZE)?.fill(0);
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

/// The first iovec with a non-zero length (or the last one, or an empty one): reads, like
/// wasmtime's, fill one buffer per call. Every buffer is checked first.
fn first_non_empty(mem: &GuestMemory<'_>, iovs: u32, iovs_len: u32) -> Result<(u32, u32), Errno> {
    validate_iovecs(mem, iovs, iovs_len)?;
    let mut found = (0, 0);
    for i in 0..iovs_len {
        found = iovec(mem, iovs, i)?;
        if found.1 > 0 {
            break;
        }
    }
    Ok(found)
}

/// Checks the iovec array and every buffer it names before any I/O happens, so a bad
/// pointer cannot surface after data was already consumed.
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

fn count(n: usize) -> Result<u32, Errno> {
    u32::try_from(n).map_err(|_| EOVERFLOW)
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

impl FileFd {
    /// Is the position at or past the end (a read would return nothing)?
    pub(crate) fn at_end(&self) -> bool {
        let mut f = &self.file;
        match (f.stream_position(), self.file.metadata()) {
            (Ok(pos), Ok(meta)) => pos >= meta.len(),
            _ => false,
        }
    }
}
