//! A local mirror: a directory whose files are addressable by their CIDs, as after
//! `ipfs add`. A file named by the requested CID is tried first, then every file, each
//! hashed as `ipfs add` would. What is copied out is verified again while it is copied,
//! so a file changing under us is caught too.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use cid::Cid;

use crate::error::{FetchError, Result};
use crate::importer::{FileCheck, CHUNK_SIZE};
use crate::output::Output;

/// Copies the file with `cid` from `dir` into `out`.
pub fn fetch_from_mirror(dir: &Path, cid: &Cid, out: &mut Output, max_size: u64) -> Result<()> {
    let mut notes = Vec::new();
    let named = dir.join(cid.to_string());
    if named.is_file() {
        match copy_verified(&named, cid, out, max_size) {
            Ok(()) => return Ok(()),
            Err(e) => notes.push(e.to_string()),
        }
    }
    let entries = fs::read_dir(dir).map_err(|e| FetchError::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && *p != named)
        .collect();
    files.sort();
    for path in files {
        let too_big = fs::metadata(&path)
            .map(|m| m.len() > max_size)
            .unwrap_or(true);
        if too_big {
            continue;
        }
        if cid_matches(&path, cid)? {
            return copy_verified(&path, cid, out, max_size);
        }
    }
    Err(FetchError::NotInMirror {
        dir: dir.to_owned(),
        detail: notes.iter().map(|n| format!(" ({n})")).collect(),
    })
}

fn cid_matches(path: &Path, cid: &Cid) -> Result<bool> {
    let Some(mut check) = FileCheck::for_cid(cid) else {
        return Ok(false);
    };
    read_chunks(path, |chunk| {
        check.write(chunk);
        Ok(())
    })?;
    Ok(check.finish() == *cid)
}

/// Starts `out` afresh, copies the file into it, and checks the CID of what was copied.
fn copy_verified(path: &Path, cid: &Cid, out: &mut Output, max_size: u64) -> Result<()> {
    let mut check = FileCheck::for_cid(cid).ok_or_else(|| FetchError::Unsupported {
        cid: cid.to_string(),
        what: "CID form for a mirror (not one `ipfs add` makes)".into(),
    })?;
    out.reset()?;
    read_chunks(path, |chunk| {
        if out.written() + chunk.len() as u64 > max_size {
            return Err(FetchError::TooLarge {
                cid: cid.to_string(),
                limit: max_size,
            });
        }
        check.write(chunk);
        out.write(chunk)
    })?;
    let got = check.finish();
    if got == *cid {
        Ok(())
    } else {
        Err(FetchError::Malformed {
            cid: cid.to_string(),
            what: "mirror file",
            detail: format!("{} has CID {got}", path.display()),
        })
    }
}

fn read_chunks(path: &Path, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut file = File::open(path).map_err(|e| FetchError::io(path, e))?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FetchError::io(path, e)),
        };
        each(&buf[..n])?;
    }
}
