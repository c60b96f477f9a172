//! Preopened directories and `fd_readdir`.

use cap_std::fs::{Dir, FileType, FileTypeExt, MetadataExt};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;

use super::abi::errno::{Errno, EINVAL, ENAMETOOLONG};
use super::abi::{filetype, layout};
use super::errno;
use super::fds::{DirFd, FdTable, Inodes};
use super::memory::GuestMemory;
use super::{Preopen, WasiError};

pub(crate) struct Listed {
    name: Vec<u8>,
    filetype: u8,
    ino: u64,
}

/// Opens a preopen's host directory with ambient authority; this is the only place
/// ambient authority is used, and every guest path is resolved beneath the resulting
/// `Dir`.
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
        readable: true,
        listing: None,
    })
}

impl FdTable {
    /// `fd_readdir`: entries are ".", ".." and then the directory's entries sorted by name
    /// bytes (host order is arbitrary and would make guest output differ between runs);
    /// the cookie is the index of the next entry. The buffer is filled completely, the
    /// last entry truncated, as the spec asks: the caller sees bufused == buf_len and
    /// retries bigger.
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
        let (dir, inodes) = self.dir_and_inodes(fd)?;
        if cookie == 0 || dir.listing.is_none() {
            dir.listing = Some(list_dir(&dir.dir, inodes)?);
        }
        let listing = dir.listing.as_deref().unwrap_or_default();
        let out = mem.slice_mut(buf, buf_len)?;
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        let mut used = 0usize;
        'entries: for (index, entry) in listing.iter().enumerate().skip(start) {
            let namlen = u32::try_from(entry.name.len()).map_err(|_| ENAMETOOLONG)?;
            let next = u64::try_from(index.saturating_add(1)).unwrap_or(u64::MAX);
            let mut header = [0u8; layout::DIRENT_SIZE];
            header[0..8].copy_from_slice(&next.to_le_bytes());
            header[8..16].copy_from_slice(&entry.ino.to_le_bytes());
            header[16..20].copy_from_slice(&namlen.to_le_bytes());
            header[20] = entry.filetype;
            for chunk in [&header[..], &entry.name[..]] {
                let room = out.len().saturating_sub(used);
                let n = chunk.len().min(room);
                let end = used.saturating_add(n);
                if let (Some(dst), Some(src)) = (out.get_mut(used..end), chunk.get(..n)) {
                    dst.copy_from_slice(src);
                }
                used = end;
                if n < chunk.len() || used == out.len() {
                    break 'entries;
                }
            }
        }
        let used = u32::try_from(used).map_err(|_| EINVAL)?;
        mem.write_u32(bufused_ptr, used)
    }
}

fn list_dir(dir: &Dir, inodes: &mut Inodes) -> Result<Vec<Listed>, Errno> {
    let io_err = |e: io::Error| errno::from_io(&e);
    let self_ino = dir
        .dir_metadata()
        .map(|m| inodes.guest_ids(m.dev(), m.ino()).1)
        .unwrap_or(0);
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let filetype = entry
            .file_type()
            .map(filetype_of)
            .unwrap_or(filetype::UNKNOWN);
        entries.push(Listed {
            name: entry.file_name().into_encoded_bytes(),
            filetype,
            ino: 0,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    // Numbered after sorting, so that seeded runs number files in one order.
    for entry in &mut entries {
        entry.ino = dir
            .symlink_metadata(OsStr::from_bytes(&entry.name))
            .map(|m| inodes.guest_ids(m.dev(), m.ino()).1)
            .unwrap_or(0);
    }
    // ".." of a preopen lies outside the sandbox, so it reports the directory's own inode
    // (as wasmtime does), never its parent's.
    let dots = [&b"."[..], &b".."[..]].map(|name| Listed {
        name: name.to_vec(),
        filetype: filetype::DIRECTORY,
        ino: self_ino,
    });
    Ok(dots.into_iter().chain(entries).collect())
}

pub(crate) fn filetype_of(ft: FileType) -> u8 {
    if ft.is_dir() {
        filetype::DIRECTORY
    } else if ft.is_file() {
        filetype::REGULAR_FILE
    } else if ft.is_symlink() {
        filetype::SYMBOLIC_LINK
    } else if ft.is_char_device() {
        filetype::CHARACTER_DEVICE
    } else if ft.is_block_device() {
        filetype::BLOCK_DEVICE
    } else if ft.is_socket() {
        filetype::SOCKET_STREAM
    } else {
        filetype::UNKNOWN
    }
}
