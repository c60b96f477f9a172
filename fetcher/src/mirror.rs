//! A local mirror: a directory whose files are addressable by their CIDs, as after
//! `ipfs add`. A file named by the requested CID is tried first, then every file, each
//! hashed as `ipfs add` would. What is copied out is verified again while it is copied,
//! so a file changing under us is caught too.
//!
//! A mirror follows a gateway's rules: a file over the size cap is skipped, not hashed (its
//! content is unverified, so it proves nothing about the CID), and the work stops when the
//! mirror's share of the total timeout runs out. That is checked between reads: the reads
//! are synchronous, and one that hangs (a dead network mount) is not interrupted.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cid::Cid;

use crate::error::{report, FetchError};
use crate::fetch::Failure;
use crate::importer::{FileCheck, CHUNK_SIZE};
use crate::output::Output;

/// Copies the file with `cid` from `dir` into `out`, giving up at `deadline` (if any).
pub fn fetch_from_mirror(
    dir: &Path,
    cid: &Cid,
    out: &mut Output,
    max_size: u64,
    deadline: Option<Instant>,
) -> Result<(), Failure> {
    let mut notes = Vec::new();
    let named = dir.join(cid.to_string());
    if named.is_file() {
        // Its path holds the CID, which the error above this one names already.
        let what = "the file named by the CID";
        match fits(&named, max_size) {
            Ok(()) => match copy_checked(&named, cid, out, max_size, deadline) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(got)) => notes.push(format!("{what} has CID {got}")),
                Err(f @ (Failure::Fatal(_) | Failure::OutOfTime)) => return Err(f),
                Err(f) => notes.push(format!("{what}: {f}")),
            },
            Err(f) => notes.push(format!("{what}: {f}")),
        }
    }
    let entries = fs::read_dir(dir).map_err(|e| unreadable(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && *p != named)
        .collect();
    files.sort();
    let mut over_cap = 0usize;
    for path in files {
        if fits(&path, max_size).is_err() {
            over_cap += 1;
            continue;
        }
        match cid_matches(&path, cid, deadline) {
            Ok(true) => {
                return match copy_checked(&path, cid, out, max_size, deadline)? {
                    Ok(()) => Ok(()),
                    Err(got) => Err(Failure::BadData(FetchError::Malformed {
                        cid: cid.to_string(),
                        what: "mirror file",
                        detail: format!(
                            "{} changed while it was copied: now CID {got}",
                            path.display()
                        ),
                    })),
                };
            }
            Ok(false) => {}
            Err(f @ (Failure::Fatal(_) | Failure::OutOfTime)) => return Err(f),
            Err(f) => notes.push(f.to_string()),
        }
    }
    if over_cap > 0 {
        notes.push(format!(
            "{over_cap} file(s) over the size cap of {max_size} bytes (--max-size) not hashed"
        ));
    }
    let detail: String = notes.iter().map(|n| format!("; {n}")).collect();
    Err(Failure::NotFound(format!(
        "no file in it has this CID{detail}"
    )))
}

/// A file over the cap is not read: whatever it holds, this fetch could not accept it.
fn fits(path: &Path, max_size: u64) -> Result<(), Failure> {
    let len = fs::metadata(path).map_err(|e| unreadable(path, e))?.len();
    if len > max_size {
        return Err(Failure::OverCap {
            what: format!("{len} bytes"),
            limit: max_size,
        });
    }
    Ok(())
}

fn unreadable(path: &Path, e: std::io::Error) -> Failure {
    Failure::NotFound(report(&FetchError::io(path, e)))
}

fn out_of_time(deadline: Option<Instant>) -> Result<(), Failure> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(Failure::OutOfTime),
        _ => Ok(()),
    }
}

fn cid_matches(path: &Path, cid: &Cid, deadline: Option<Instant>) -> Result<bool, Failure> {
    let Some(mut check) = FileCheck::for_cid(cid) else {
        return Ok(false);
    };
    read_chunks(path, deadline, |chunk| {
        check.write(chunk);
        Ok(())
    })?;
    Ok(check.finish() == *cid)
}

/// Starts `out` afresh, copies the file into it, and checks the CID of what was copied:
/// `Ok(Err(got))` when the file holds other content.
fn copy_checked(
    path: &Path,
    cid: &Cid,
    out: &mut Output,
    max_size: u64,
    deadline: Option<Instant>,
) -> Result<Result<(), Cid>, Failure> {
    let Some(mut check) = FileCheck::for_cid(cid) else {
        return Err(Failure::NotFound(
            "a mirror can only check the CID forms `ipfs add` makes".into(),
        ));
    };
    out.reset()?;
    read_chunks(path, deadline, |chunk| {
        if out.written().saturating_add(chunk.len() as u64) > max_size {
            // The file grew after `fits` looked at it.
            return Err(Failure::OverCap {
                what: path.display().to_string(),
                limit: max_size,
            });
        }
        check.write(chunk);
        out.write(chunk).map_err(Failure::from)
    })?;
    let got = check.finish();
    Ok(if got == *cid { Ok(()) } else { Err(got) })
}

fn read_chunks(
    path: &Path,
    deadline: Option<Instant>,
    mut each: impl FnMut(&[u8]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    out_of_time(deadline)?;
    let mut file = File::open(path).map_err(|e| unreadable(path, e))?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreadable(path, e)),
        };
        each(&buf[..n])?;
        out_of_time(deadline)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::importer::{cid_of_bytes, Params};

    #[test]
    fn a_mirror_out_of_time_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"in the mirror\n";
        std::fs::write(dir.path().join("a.bin"), data).unwrap();
        let cid = cid_of_bytes(Params::V0, data);
        let target = dir.path().join("out").join("x");
        let mut out = Output::create(&target).unwrap();
        let past = Some(Instant::now());
        assert!(matches!(
            fetch_from_mirror(dir.path(), &cid, &mut out, 1024, past),
            Err(Failure::OutOfTime)
        ));
        assert!(fetch_from_mirror(dir.path(), &cid, &mut out, 1024, None).is_ok());
    }

    #[test]
    fn a_file_over_the_cap_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 2048];
        let cid = cid_of_bytes(Params::V1, &data);
        std::fs::write(dir.path().join(cid.to_string()), &data).unwrap();
        let target = dir.path().join("out").join("x");
        let mut out = Output::create(&target).unwrap();
        let Err(Failure::NotFound(why)) = fetch_from_mirror(dir.path(), &cid, &mut out, 1024, None)
        else {
            panic!("a file over the cap makes the mirror a source without the file");
        };
        assert!(why.contains("size cap of 1024 bytes"), "{why}");
        assert!(!why.contains(&cid.to_string()), "{why}");
    }
}
