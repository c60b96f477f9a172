//! CARv1 decoding, push-based: bytes go in as they arrive from the network or a file,
//! `(CID, block)` frames come out. Pure.
//!
//! Written here rather than taken from a crate because it must be incremental (a CAR of a
//! 50 MiB module is never held whole) and must check every length from the wire before
//! allocating (the crates we looked at trust them). The header's dag-cbor is read by a
//! minimal decoder that accepts exactly `{roots: [CID…], version: 1}`.

use cid::Cid;

use crate::cid::read_cid;
use crate::error::{FetchError, Result};
use crate::pb::read_varint;

pub const MAX_HEADER_LEN: u64 = 64 * 1024;
/// Bitswap's block limit is 2 MiB; kubo writes at most 1 MiB. A frame also holds its CID.
pub const MAX_FRAME_LEN: u64 = 2 * 1024 * 1024 + 128;

#[derive(Debug, Default)]
pub struct CarDecoder {
    buf: Vec<u8>,
    start: usize,
    roots: Option<Vec<Cid>>,
    frames: u64,
}

impl CarDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The header's roots, once the header has been read.
    pub fn roots(&self) -> Option<&[Cid]> {
        self.roots.as_deref()
    }

    /// The next complete frame, or `None` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Result<Option<(Cid, Vec<u8>)>> {
        if self.roots.is_none() {
            let Some(header) = self.take_section(MAX_HEADER_LEN, "header")? else {
                return Ok(None);
            };
            self.roots = Some(parse_header(&self.buf[header])?);
        }
        let Some(frame) = self.take_section(MAX_FRAME_LEN, "block frame")? else {
            return Ok(None);
        };
        self.frames += 1;
        let frame = &self.buf[frame];
        let (cid, used) = read_cid(frame, "CAR frame")
            .map_err(|e| FetchError::Car(format!("frame {}: {e}", self.frames)))?;
        // The block's one copy out of the buffer.
        Ok(Some((cid, frame[used..].to_vec())))
    }

    /// The stream ended: it must have ended between frames, after a header.
    pub fn finish(&self) -> Result<()> {
        if self.roots.is_none() {
            return Err(FetchError::Car(
                "the stream ended before the CAR header".into(),
            ));
        }
        let left = self.buf.len() - self.start;
        if left > 0 {
            return Err(FetchError::Car(format!(
                "the stream ended inside a frame ({left} bytes of it arrived)"
            )));
        }
        Ok(())
    }

    /// Where in the buffer a varint-length-prefixed section is, if it has fully arrived; it
    /// counts as read.
    fn take_section(&mut self, max: u64, what: &str) -> Result<Option<std::ops::Range<usize>>> {
        let avail = &self.buf[self.start..];
        let (len, used) = match read_varint(avail) {
            Ok(v) => v,
            // Not an error while the varint may still be arriving.
            Err(_) if avail.len() < 10 && avail.iter().all(|b| b & 0x80 != 0) => return Ok(None),
            Err(e) => return Err(FetchError::Car(format!("{what} length: {e}"))),
        };
        if len == 0 || len > max {
            return Err(FetchError::Car(format!(
                "{what} length {len} is outside 1..={max}"
            )));
        }
        let len = len as usize; // <= max, which fits
        if avail.len() - used < len {
            return Ok(None);
        }
        let section = self.start + used..self.start + used + len;
        self.start = section.end;
        Ok(Some(section))
    }
}

/// A CARv1 of the DAG under `root` from `blocks` (any order), written depth-first with each
/// block once (`dups=n`), as a trustless gateway would. For tests and benchmarks.
pub fn encode(root: &Cid, blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    use crate::pb::put_varint;
    let by_cid: std::collections::HashMap<&Cid, &Vec<u8>> =
        blocks.iter().map(|(c, b)| (c, b)).collect();
    let root_bytes = root.to_bytes();
    // {"roots": [tag42(0x00 ‖ cid)], "version": 1}, with the short forms dag-cbor requires.
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, (root_bytes.len() + 1) as u8, 0x00]);
    header.extend_from_slice(&root_bytes);
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let mut out = Vec::new();
    put_varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        let Some(block) = by_cid.get(&cid) else {
            continue;
        };
        if !seen.insert(cid) {
            continue;
        }
        let cid_bytes = cid.to_bytes();
        put_varint(&mut out, (cid_bytes.len() + block.len()) as u64);
        out.extend_from_slice(&cid_bytes);
        out.extend_from_slice(block);
        if let Ok((_, children)) = crate::verify::interpret(&cid, block) {
            stack.extend(children.into_iter().rev());
        }
    }
    out
}

/// `{"roots": [CID…], "version": 1}` in dag-cbor.
fn parse_header(bytes: &[u8]) -> Result<Vec<Cid>> {
    let bad = |m: &str| FetchError::Car(format!("header: {m}"));
    let mut c = Cbor { buf: bytes, pos: 0 };
    let (major, entries) = c.head()?;
    if major != 5 || entries > 16 {
        return Err(bad("not a map"));
    }
    let (mut roots, mut version) = (None, None);
    for _ in 0..entries {
        let key = c.text()?;
        match key {
            b"roots" => {
                let (major, n) = c.head()?;
                if major != 4 || n > 64 {
                    return Err(bad("roots is not a short array"));
                }
                let mut list = Vec::new();
                for _ in 0..n {
                    let (major, tag) = c.head()?;
                    if (major, tag) != (6, 42) {
                        return Err(bad("a root is not a CID (tag 42)"));
                    }
                    let raw = c.bytes()?;
                    match raw.split_first() {
                        Some((0, cid_bytes)) => {
                            let (cid, used) = read_cid(cid_bytes, "CAR root")?;
                            if used != cid_bytes.len() {
                                return Err(bad("trailing bytes after a root CID"));
                            }
                            list.push(cid);
                        }
                        _ => return Err(bad("a root CID lacks the 0x00 multibase prefix")),
                    }
                }
                roots = Some(list);
            }
            b"version" => {
                let (major, v) = c.head()?;
                if major != 0 {
                    return Err(bad("version is not an integer"));
                }
                version = Some(v);
            }
            other => {
                return Err(bad(&format!(
                    "unexpected key {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        }
    }
    match version {
        Some(1) => {}
        Some(v) => return Err(bad(&format!("version {v}; only CARv1 is supported"))),
        None => return Err(bad("no version")),
    }
    if c.pos != bytes.len() {
        return Err(bad("trailing bytes"));
    }
    roots.ok_or_else(|| bad("no roots"))
}

struct Cbor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(FetchError::Car(format!(
                "header: {n} bytes needed, {left} left"
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A data item's major type and argument; indefinite lengths are refused.
    fn head(&mut self) -> Result<(u8, u64)> {
        let first = self.take(1)?[0];
        let major = first >> 5;
        let info = first & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                self.take(n)?
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            _ => {
                return Err(FetchError::Car(
                    "header: indefinite or reserved CBOR length".into(),
                ))
            }
        };
        Ok((major, arg))
    }

    fn string(&mut self, want_major: u8) -> Result<&'a [u8]> {
        let (major, len) = self.head()?;
        if major != want_major {
            return Err(FetchError::Car(format!(
                "header: expected CBOR major type {want_major}, got {major}"
            )));
        }
        let len =
            usize::try_from(len).map_err(|_| FetchError::Car("header: string too long".into()))?;
        self.take(len)
    }

    fn text(&mut self) -> Result<&'a [u8]> {
        self.string(3)
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        self.string(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_car() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ipfs-vectors/hello-world.car"
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn decodes_a_kubo_car_in_any_split() {
        let car = hello_car();
        for split in [1, 2, 7, car.len()] {
            let mut d = CarDecoder::new();
            let mut frames = Vec::new();
            for piece in car.chunks(split) {
                d.push(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            d.finish().unwrap();
            assert_eq!(frames.len(), 1, "split {split}");
            assert_eq!(d.roots().unwrap(), &[frames[0].0]);
            crate::cid::verify_block(&frames[0].0, &frames[0].1).unwrap();
        }
    }

    #[test]
    fn encoding_reproduces_kubos_car_bytes() {
        let car = hello_car();
        let mut d = CarDecoder::new();
        d.push(&car);
        let (cid, block) = d.next_frame().unwrap().unwrap();
        assert_eq!(encode(&cid, &[(cid, block)]), car);
    }

    #[test]
    fn truncation_is_reported() {
        let car = hello_car();
        let mut d = CarDecoder::new();
        d.push(&car[..car.len() - 3]);
        while d.next_frame().unwrap().is_some() {}
        assert!(d
            .finish()
            .unwrap_err()
            .to_string()
            .contains("inside a frame"));
    }

    #[test]
    fn huge_declared_lengths_fail_before_allocating() {
        let mut d = CarDecoder::new();
        d.push(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(d.next_frame().is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut d = CarDecoder::new();
            d.push(&bytes);
            for _ in 0..8 {
                match d.next_frame() { Ok(Some(_)) => {}, _ => break }
            }
            let _ = d.finish();
        }

        #[test]
        fn mutated_cars_never_panic(at in 0usize..200, byte in proptest::num::u8::ANY) {
            let mut car = hello_car();
            let i = at % car.len();
            car[i] = byte;
            let mut d = CarDecoder::new();
            d.push(&car);
            for _ in 0..8 {
                match d.next_frame() { Ok(Some(_)) => {}, _ => break }
            }
            let _ = d.finish();
        }
    }
}
