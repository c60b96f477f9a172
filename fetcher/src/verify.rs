//! Verifying a UnixFS file's DAG block by block, in depth-first order, as lassie does.
//!
//! Sans-IO: blocks go in ([`DagVerifier::accept`]), instructions for the output file come
//! out ([`Emit`]). Every block is hashed against the CID that its parent (or the request)
//! named, and must arrive where the depth-first walk expects it: an unexpected, missing or
//! extra block is an error. A block that occurs twice in the DAG (a file of zeros links one
//! leaf many times) may be sent once (`dups=n`) or every time (`dups=y`): when the stream
//! skips a repeat, its bytes are copied from where they were first written.
//!
//! Memory is bounded by the DAG's shape, not the file's size: the walk's stack, and one
//! (offset, length) pair per distinct block, both capped.
//!
//! The size cap is checked on verified content only: a root that declares a file over the
//! cap fails on its first block, and verified bytes adding up past the cap fail too. Both
//! are facts about the CID, the same from every source ([`FetchError::TooLarge`]).

use std::collections::HashMap;
use std::ops::Range;

use cid::Cid;

use crate::cid::{check_supported, verify_block, DAG_PB, RAW};
use crate::error::{FetchError, Result};
use crate::{dagpb, unixfs};

/// Deeper than any DAG kubo builds for a 256 MiB file (which is depth 2).
pub const MAX_DEPTH: u32 = 32;
/// Distinct blocks per DAG; a 256 MiB file in 256 KiB chunks has about 1000.
pub const MAX_BLOCKS: usize = 1 << 20;

/// What to do with the output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    /// Append these bytes of the block just accepted.
    Data(Range<usize>),
    /// Append `len` bytes already written at `offset` (a repeated subtree).
    Copy { offset: u64, len: u64 },
}

#[derive(Debug)]
enum Frame {
    Visit { cid: Cid, depth: u32 },
    Close { cid: Cid, start: u64 },
}

#[derive(Debug)]
pub struct DagVerifier {
    stack: Vec<Frame>,
    /// Completed subtrees: where their bytes are in the output.
    done: HashMap<Cid, (u64, u64)>,
    offset: u64,
    max_size: u64,
    root: Cid,
}

impl DagVerifier {
    pub fn new(root: Cid, max_size: u64) -> Self {
        Self {
            stack: vec![Frame::Visit {
                cid: root,
                depth: 0,
            }],
            done: HashMap::new(),
            offset: 0,
            max_size,
            root,
        }
    }

    /// File bytes produced so far.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// Takes the next block of a stream (a CAR) and says what to write.
    pub fn accept(&mut self, cid: &Cid, data: &[u8]) -> Result<Vec<Emit>> {
        let mut emits = Vec::new();
        loop {
            match self.stack.pop() {
                None => {
                    return Err(FetchError::ExtraBlock {
                        got: cid.to_string(),
                    })
                }
                Some(Frame::Close { cid, start }) => self.close(cid, start)?,
                Some(Frame::Visit {
                    cid: expected,
                    depth,
                }) => {
                    if &expected == cid {
                        self.visit(expected, depth, data, &mut emits)?;
                        return Ok(emits);
                    }
                    match self.done.get(&expected) {
                        // dups=n: the stream skipped a repeat it already sent.
                        Some(&(offset, len)) => self.copy(offset, len, &mut emits)?,
                        None => {
                            return Err(FetchError::UnexpectedBlock {
                                expected: expected.to_string(),
                                got: cid.to_string(),
                            })
                        }
                    }
                }
            }
        }
    }

    /// For block-by-block fetching: copies repeats, then names the next block to fetch
    /// (`None` when the file is complete).
    pub fn next_needed(&mut self) -> Result<(Option<Cid>, Vec<Emit>)> {
        let mut emits = Vec::new();
        loop {
            match self.stack.last() {
                None => return Ok((None, emits)),
                Some(Frame::Visit { cid, .. }) => match self.done.get(cid) {
                    Some(&(offset, len)) => {
                        self.stack.pop();
                        self.copy(offset, len, &mut emits)?;
                    }
                    None => return Ok((Some(*cid), emits)),
                },
                Some(Frame::Close { .. }) => {
                    if let Some(Frame::Close { cid, start }) = self.stack.pop() {
                        self.close(cid, start)?;
                    }
                }
            }
        }
    }

    /// The stream ended: fine only if nothing but repeats was left.
    pub fn finish(&mut self) -> Result<Vec<Emit>> {
        match self.next_needed()? {
            (None, emits) => Ok(emits),
            (Some(missing), _) => Err(FetchError::MissingBlock {
                missing: missing.to_string(),
            }),
        }
    }

    fn visit(&mut self, cid: Cid, depth: u32, block: &[u8], emits: &mut Vec<Emit>) -> Result<()> {
        verify_block(&cid, block)?;
        if depth == 0 {
            self.check_declared_size(block)?;
        }
        let start = self.offset;
        let (data, children) = interpret(&cid, block)?;
        if let Some(range) = data {
            self.grow(range.len() as u64)?;
            if !range.is_empty() {
                emits.push(Emit::Data(range));
            }
        }
        if children.is_empty() {
            return self.close(cid, start);
        }
        if depth >= MAX_DEPTH {
            return Err(FetchError::DagLimit {
                cid: self.root.to_string(),
                detail: format!("deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(Frame::Close { cid, start });
        for child in children.into_iter().rev() {
            self.stack.push(Frame::Visit {
                cid: child,
                depth: depth + 1,
            });
        }
        Ok(())
    }

    fn close(&mut self, cid: Cid, start: u64) -> Result<()> {
        self.done.entry(cid).or_insert((start, self.offset - start));
        if self.done.len() > MAX_BLOCKS {
            return Err(FetchError::DagLimit {
                cid: self.root.to_string(),
                detail: format!("more than {MAX_BLOCKS} distinct blocks"),
            });
        }
        Ok(())
    }

    fn copy(&mut self, offset: u64, len: u64, emits: &mut Vec<Emit>) -> Result<()> {
        self.grow(len)?;
        if len > 0 {
            emits.push(Emit::Copy { offset, len });
        }
        Ok(())
    }

    /// A verified root that declares a file over the cap ends the fetch at its first block:
    /// the size is part of the content, so every source would send the same.
    fn check_declared_size(&self, root_block: &[u8]) -> Result<()> {
        match declared_size(&self.root, root_block) {
            Some(size) if size > self.max_size => Err(FetchError::TooLarge {
                cid: self.root.to_string(),
                size,
                limit: self.max_size,
            }),
            _ => Ok(()),
        }
    }

    fn grow(&mut self, n: u64) -> Result<()> {
        match self.offset.checked_add(n) {
            Some(total) if total <= self.max_size => {
                self.offset = total;
                Ok(())
            }
            // Only verified blocks get here, so this too is the content's size.
            total => Err(FetchError::TooLarge {
                cid: self.root.to_string(),
                size: total.unwrap_or(u64::MAX),
                limit: self.max_size,
            }),
        }
    }
}

/// The file size a dag-pb UnixFS node declares: its `filesize`, else its own data plus its
/// children's `blocksizes`. `None` for a raw block (its length is its size) or a node that
/// does not parse (the walk reports that).
pub fn declared_size(cid: &Cid, block: &[u8]) -> Option<u64> {
    if cid.codec() != DAG_PB {
        return None;
    }
    let node = dagpb::decode(block).ok()?;
    let fs = unixfs::decode(node.data?).ok()?;
    fs.filesize.or_else(|| {
        let own = fs.data.map_or(0, |d| d.len() as u64);
        fs.blocksizes
            .iter()
            .try_fold(own, |sum, size| sum.checked_add(*size))
    })
}

/// A verified block's file bytes (as a range of the block) and its children, in order.
pub fn interpret(cid: &Cid, block: &[u8]) -> Result<(Option<Range<usize>>, Vec<Cid>)> {
    let malformed = |what, detail: String| FetchError::Malformed {
        cid: cid.to_string(),
        what,
        detail,
    };
    match cid.codec() {
        RAW => Ok((Some(0..block.len()), Vec::new())),
        DAG_PB => {
            let node = dagpb::decode(block).map_err(|e| malformed("dag-pb node", e.0))?;
            let payload = node
                .data
                .ok_or_else(|| malformed("UnixFS node", "no Data field".into()))?;
            let fs = unixfs::decode(payload).map_err(|e| malformed("UnixFS data", e.0))?;
            if !fs.is_file() {
                return Err(FetchError::NotAFile {
                    cid: cid.to_string(),
                    kind: unixfs::kind_name(fs.kind),
                });
            }
            if !node.links.is_empty() && fs.blocksizes.len() != node.links.len() {
                return Err(malformed(
                    "UnixFS file node",
                    format!(
                        "{} links but {} blocksizes",
                        node.links.len(),
                        fs.blocksizes.len()
                    ),
                ));
            }
            let range = fs.data.map(|d| {
                // `d` borrows from `block`: its position is the distance between the two.
                let start = d.as_ptr() as usize - block.as_ptr() as usize;
                start..start + d.len()
            });
            let mut children = Vec::with_capacity(node.links.len());
            for link in node.links {
                check_supported(&link.cid)?;
                children.push(link.cid);
            }
            Ok((range, children))
        }
        _ => check_supported(cid).map(|()| (None, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::cid_of;
    use crate::dagpb::{Link, Node};
    use cid::Version;

    /// A two-leaf file whose leaves are the same block: [leaf, leaf].
    fn repeated() -> (Cid, Vec<u8>, Cid, Vec<u8>) {
        let leaf_data = b"abc".to_vec();
        let leaf = cid_of(Version::V1, RAW, &leaf_data);
        let payload = unixfs::encode_file(None, 6, &[3, 3]);
        let link = Link {
            cid: leaf,
            name: Some(Vec::new()),
            tsize: Some(3),
        };
        let root_block = dagpb::encode(&Node {
            links: vec![link.clone(), link],
            data: Some(&payload),
        });
        let root = cid_of(Version::V1, DAG_PB, &root_block);
        (root, root_block, leaf, leaf_data)
    }

    #[test]
    fn dups_n_copies_the_repeat() {
        let (root, rb, leaf, lb) = repeated();
        let mut v = DagVerifier::new(root, 100);
        assert_eq!(v.accept(&root, &rb).unwrap(), vec![]);
        assert_eq!(v.accept(&leaf, &lb).unwrap(), vec![Emit::Data(0..3)]);
        assert_eq!(v.finish().unwrap(), vec![Emit::Copy { offset: 0, len: 3 }]);
        assert_eq!(v.written(), 6);
    }

    #[test]
    fn dups_y_accepts_the_repeat_again() {
        let (root, rb, leaf, lb) = repeated();
        let mut v = DagVerifier::new(root, 100);
        v.accept(&root, &rb).unwrap();
        v.accept(&leaf, &lb).unwrap();
        assert_eq!(v.accept(&leaf, &lb).unwrap(), vec![Emit::Data(0..3)]);
        assert_eq!(v.finish().unwrap(), vec![]);
        assert!(matches!(
            v.accept(&leaf, &lb),
            Err(FetchError::ExtraBlock { .. })
        ));
    }

    #[test]
    fn wrong_order_missing_and_corrupt_blocks_fail() {
        let (root, rb, leaf, lb) = repeated();
        let mut v = DagVerifier::new(root, 100);
        assert!(matches!(
            v.accept(&leaf, &lb),
            Err(FetchError::UnexpectedBlock { .. })
        ));
        let mut v = DagVerifier::new(root, 100);
        v.accept(&root, &rb).unwrap();
        assert!(matches!(v.finish(), Err(FetchError::MissingBlock { .. })));
        let mut v = DagVerifier::new(root, 100);
        v.accept(&root, &rb).unwrap();
        assert!(matches!(
            v.accept(&leaf, b"abd"),
            Err(FetchError::HashMismatch { .. })
        ));
    }

    #[test]
    fn size_cap_counts_copies_too() {
        // A root that declares 3 bytes (under the cap) but links the 3-byte leaf twice.
        let (_, _, leaf, lb) = repeated();
        let payload = unixfs::encode_file(None, 3, &[3, 3]);
        let link = Link {
            cid: leaf,
            name: Some(Vec::new()),
            tsize: Some(3),
        };
        let rb = dagpb::encode(&Node {
            links: vec![link.clone(), link],
            data: Some(&payload),
        });
        let root = cid_of(Version::V1, DAG_PB, &rb);
        let mut v = DagVerifier::new(root, 5);
        v.accept(&root, &rb).unwrap();
        v.accept(&leaf, &lb).unwrap();
        assert!(matches!(
            v.finish(),
            Err(FetchError::TooLarge { limit: 5, .. })
        ));
    }

    #[test]
    fn a_root_declaring_a_file_over_the_cap_fails_at_once() {
        // The root says 6 bytes; a cap of 5 fails on the root, before any leaf arrives.
        let (root, rb, _, _) = repeated();
        let mut v = DagVerifier::new(root, 5);
        assert!(matches!(
            v.accept(&root, &rb),
            Err(FetchError::TooLarge {
                size: 6,
                limit: 5,
                ..
            })
        ));
        assert_eq!(declared_size(&root, &rb), Some(6));
        let mut v = DagVerifier::new(root, 6);
        assert!(
            v.accept(&root, &rb).is_ok(),
            "a file at the cap is accepted"
        );
    }

    #[test]
    fn block_by_block_asks_for_each_block_once() {
        let (root, rb, leaf, lb) = repeated();
        let mut v = DagVerifier::new(root, 100);
        assert_eq!(v.next_needed().unwrap().0, Some(root));
        v.accept(&root, &rb).unwrap();
        assert_eq!(v.next_needed().unwrap().0, Some(leaf));
        v.accept(&leaf, &lb).unwrap();
        let (next, emits) = v.next_needed().unwrap();
        assert_eq!(
            (next, emits),
            (None, vec![Emit::Copy { offset: 0, len: 3 }])
        );
    }

    #[test]
    fn directories_are_refused_by_name() {
        let payload = [0x08, 0x01];
        let block = dagpb::encode(&Node {
            links: Vec::new(),
            data: Some(&payload),
        });
        let cid = cid_of(Version::V0, DAG_PB, &block);
        let err = DagVerifier::new(cid, 10).accept(&cid, &block).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }
}
