//! The file being fetched: a temp file beside the target, renamed over it only after
//! verification. Dropped without [`Output::commit`], it removes itself, so a failure never
//! leaves anything at the target path.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{FetchError, Result};
use crate::verify::Emit;

#[derive(Debug)]
pub struct Output {
    temp: PathBuf,
    file: Option<File>,
    written: u64,
}

impl Output {
    /// Removes whatever is at `target` (a stale file must not pass for this fetch's) and
    /// creates the temp file in the same directory, so the final rename is atomic.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| {
            // create_dir_all reports a file in the way as "File exists", which misleads.
            let e = match fs::metadata(&dir) {
                Ok(m) if !m.is_dir() => std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "a file, not a directory",
                ),
                _ => e,
            };
            FetchError::io(&dir, e)
        })?;
        match fs::remove_file(target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FetchError::io(target, e)),
        }
        let name = target
            .file_name()
            .ok_or_else(|| FetchError::Usage(format!("{}: names no file", target.display())))?;
        let temp = dir.join(format!(
            ".{}.fetching-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| FetchError::io(&temp, e))?;
        Ok(Self {
            temp,
            file: Some(file),
            written: 0,
        })
    }

    fn file(&mut self) -> Result<&mut File> {
        let temp = &self.temp;
        self.file
            .as_mut()
            .ok_or_else(|| FetchError::io(temp, std::io::Error::other("output already closed")))
    }

    /// Starts over (a retry, or the next source).
    pub fn reset(&mut self) -> Result<()> {
        let temp = self.temp.clone();
        let f = self.file()?;
        f.set_len(0)
            .and_then(|()| f.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| FetchError::io(temp, e))?;
        self.written = 0;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let temp = self.temp.clone();
        self.file()?
            .write_all(bytes)
            .map_err(|e| FetchError::io(temp, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Carries out the verifier's instructions for `block`.
    pub fn apply(&mut self, block: &[u8], emits: Vec<Emit>) -> Result<()> {
        for emit in emits {
            match emit {
                Emit::Data(range) => self.write(&block[range])?,
                Emit::Copy { offset, len } => self.copy_within(offset, len)?,
            }
        }
        Ok(())
    }

    fn copy_within(&mut self, mut offset: u64, len: u64) -> Result<()> {
        let temp = self.temp.clone();
        let mut buf = vec![0u8; 64 * 1024];
        let end = offset + len;
        while offset < end {
            let n = buf.len().min((end - offset) as usize);
            self.file()?
                .read_exact_at(&mut buf[..n], offset)
                .map_err(|e| FetchError::io(&temp, e))?;
            self.write(&buf[..n])?;
            offset += n as u64;
        }
        Ok(())
    }

    /// Flushes to disk and renames onto `target`.
    pub fn commit(mut self, target: &Path) -> Result<u64> {
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(|e| FetchError::io(&self.temp, e))?;
        }
        fs::rename(&self.temp, target).map_err(|e| FetchError::io(target, e))?;
        Ok(self.written)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}
