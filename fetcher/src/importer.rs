//! CIDs of files exactly as `ipfs add` computes them, streaming, in bounded memory.
//!
//! kubo's defaults: fixed 256 KiB chunks, a balanced DAG with at most 174 links per node,
//! a single-chunk file reduced to its leaf. CIDv0 (`ipfs add`) makes dag-pb UnixFS leaves;
//! CIDv1 (`--cid-version=1`) makes raw leaves and CIDv1 dag-pb inner nodes.
//!
//! Written here because no maintained Rust crate reproduces kubo's importer byte for byte.
//! The balanced layout is built bottom-up: a full level of 174 links becomes one node of
//! the level above at once; at the end every partial level is wrapped upward. That gives
//! the tree go-unixfs builds top-down (a root whose last child is a partial subtree of
//! full depth), as the 46 MiB test vector (root → 174 + 11 leaves) pins.

use cid::{Cid, Version};

use crate::cid::{cid_of, DAG_PB, RAW};
use crate::dagpb::{self, Link, Node};
use crate::unixfs;

pub const CHUNK_SIZE: usize = 256 * 1024;
pub const MAX_LINKS: usize = 174;

/// How to build the DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub version: Version,
    pub raw_leaves: bool,
}

impl Params {
    /// `ipfs add` (CIDv0, dag-pb leaves).
    pub const V0: Params = Params {
        version: Version::V0,
        raw_leaves: false,
    };
    /// `ipfs add --cid-version=1` (raw leaves).
    pub const V1: Params = Params {
        version: Version::V1,
        raw_leaves: true,
    };

    /// The parameters `ipfs add` would have used to make `cid`, if any default set fits.
    pub fn for_cid(cid: &Cid) -> Option<Params> {
        match (cid.version(), cid.codec()) {
            (Version::V0, _) => Some(Params::V0),
            (Version::V1, DAG_PB) | (Version::V1, RAW) => Some(Params::V1),
            _ => None,
        }
    }
}

/// One finished subtree: its CID, the bytes of all its blocks, and the file bytes it holds.
#[derive(Debug, Clone)]
struct Entry {
    cid: Cid,
    tsize: u64,
    filesize: u64,
}

/// Feed the file's bytes with [`Importer::write`], then [`Importer::finish`] for the CID.
#[derive(Debug)]
pub struct Importer {
    params: Params,
    chunk: Vec<u8>,
    levels: Vec<Vec<Entry>>,
    leaves: u64,
    /// Every block made, when asked for (to build a CAR or serve blocks); else `None`.
    blocks: Option<Vec<(Cid, Vec<u8>)>>,
}

impl Importer {
    pub fn new(params: Params) -> Self {
        Self {
            params,
            chunk: Vec::with_capacity(CHUNK_SIZE),
            levels: vec![Vec::new()],
            leaves: 0,
            blocks: None,
        }
    }

    /// Like [`Importer::new`], but keeps every block, for [`Importer::finish_with_blocks`].
    /// Memory grows with the file: for tests, benchmarks and small files.
    pub fn keeping_blocks(params: Params) -> Self {
        Self {
            blocks: Some(Vec::new()),
            ..Self::new(params)
        }
    }

    /// The root CID and every distinct block, children before parents.
    pub fn finish_with_blocks(mut self) -> (Cid, Vec<(Cid, Vec<u8>)>) {
        let root = self.finish_root();
        let mut blocks = self.blocks.take().unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        blocks.retain(|(c, _)| seen.insert(*c));
        (root, blocks)
    }

    pub fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = (CHUNK_SIZE - self.chunk.len()).min(bytes.len());
            self.chunk.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.chunk.len() == CHUNK_SIZE {
                self.flush_leaf();
            }
        }
    }

    pub fn finish(mut self) -> Cid {
        self.finish_root()
    }

    fn finish_root(&mut self) -> Cid {
        // An empty file is one empty leaf; otherwise only a partial chunk is left.
        if !self.chunk.is_empty() || self.leaves == 0 {
            self.flush_leaf();
        }
        let mut level = 0;
        loop {
            let above_empty = self.levels[level + 1..].iter().all(Vec::is_empty);
            let here = std::mem::take(&mut self.levels[level]);
            if above_empty && here.len() == 1 {
                return here[0].cid;
            }
            if !here.is_empty() {
                let node = self.inner_node(&here);
                self.push(level + 1, node);
            }
            level += 1;
        }
    }

    fn flush_leaf(&mut self) {
        let data = std::mem::take(&mut self.chunk);
        let filesize = data.len() as u64;
        let entry = if self.params.raw_leaves {
            let cid = cid_of(Version::V1, RAW, &data);
            self.keep(cid, &data);
            Entry {
                cid,
                tsize: filesize,
                filesize,
            }
        } else {
            let payload = unixfs::encode_file(Some(&data), filesize, &[]);
            let block = dagpb::encode(&Node {
                links: Vec::new(),
                data: Some(&payload),
            });
            let cid = cid_of(self.params.version, DAG_PB, &block);
            self.keep(cid, &block);
            Entry {
                cid,
                tsize: block.len() as u64,
                filesize,
            }
        };
        self.chunk = data;
        self.chunk.clear();
        self.leaves += 1;
        self.push(0, entry);
    }

    /// Adds an entry to a level; a level that fills becomes one entry of the next.
    fn push(&mut self, level: usize, entry: Entry) {
        if self.levels.len() <= level + 1 {
            self.levels.resize_with(level + 2, Vec::new);
        }
        self.levels[level].push(entry);
        if self.levels[level].len() == MAX_LINKS {
            let full = std::mem::take(&mut self.levels[level]);
            let node = self.inner_node(&full);
            self.push(level + 1, node);
        }
    }

    fn keep(&mut self, cid: Cid, block: &[u8]) {
        if let Some(blocks) = self.blocks.as_mut() {
            blocks.push((cid, block.to_vec()));
        }
    }

    fn inner_node(&mut self, children: &[Entry]) -> Entry {
        let filesize = children.iter().map(|c| c.filesize).sum();
        let blocksizes: Vec<u64> = children.iter().map(|c| c.filesize).collect();
        let payload = unixfs::encode_file(None, filesize, &blocksizes);
        let block = dagpb::encode(&Node {
            links: children
                .iter()
                .map(|c| Link {
                    cid: c.cid,
                    name: Some(Vec::new()),
                    tsize: Some(c.tsize),
                })
                .collect(),
            data: Some(&payload),
        });
        let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
        let cid = cid_of(self.params.version, DAG_PB, &block);
        self.keep(cid, &block);
        Entry {
            cid,
            tsize,
            filesize,
        }
    }
}

/// The CID of `bytes` under `params`.
pub fn cid_of_bytes(params: Params, bytes: &[u8]) -> Cid {
    let mut imp = Importer::new(params);
    imp.write(bytes);
    imp.finish()
}

/// Reads `reader` to the end and returns its CID under `params`, and its length.
pub fn cid_of_reader(
    params: Params,
    mut reader: impl std::io::Read,
) -> std::io::Result<(Cid, u64)> {
    let mut imp = Importer::new(params);
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        imp.write(&buf[..n]);
    }
    Ok((imp.finish(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_small_cids() {
        assert_eq!(
            cid_of_bytes(Params::V0, b"").to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!(
            cid_of_bytes(Params::V1, b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            cid_of_bytes(Params::V1, b"hello world\n").to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
    }

    #[test]
    fn kept_blocks_make_a_verifiable_dag() {
        let data: Vec<u8> = (0..(CHUNK_SIZE * 2 + 5)).map(|i| (i % 253) as u8).collect();
        let mut imp = Importer::keeping_blocks(Params::V1);
        imp.write(&data);
        let (root, blocks) = imp.finish_with_blocks();
        assert_eq!(root, cid_of_bytes(Params::V1, &data));
        assert_eq!(
            blocks.last().map(|b| b.0),
            Some(root),
            "the root comes last"
        );
        let car = crate::car::encode(&root, &blocks);
        let mut d = crate::car::CarDecoder::new();
        d.push(&car);
        let mut v = crate::verify::DagVerifier::new(root, u64::MAX);
        let mut out = Vec::new();
        while let Some((c, b)) = d.next_frame().unwrap() {
            for e in v.accept(&c, &b).unwrap() {
                if let crate::verify::Emit::Data(r) = e {
                    out.extend_from_slice(&b[r]);
                }
            }
        }
        assert!(v.finish().unwrap().is_empty());
        assert_eq!(out, data);
    }

    #[test]
    fn chunking_does_not_depend_on_write_sizes() {
        let data: Vec<u8> = (0..(CHUNK_SIZE * 3 + 17))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let whole = cid_of_bytes(Params::V0, &data);
        let mut imp = Importer::new(Params::V0);
        for piece in data.chunks(1000) {
            imp.write(piece);
        }
        assert_eq!(imp.finish(), whole);
    }
}

/// Checks a whole file's bytes against a CID as they stream past: through the importer for
/// a UnixFS DAG, or as one block for a raw CID.
#[derive(Debug)]
pub enum FileCheck {
    Dag(Importer),
    RawBlock(sha2::Sha256),
}

impl FileCheck {
    /// `None` when no `ipfs add` default can have made `cid` (so a plain body cannot be
    /// checked against it).
    pub fn for_cid(cid: &Cid) -> Option<FileCheck> {
        use sha2::Digest;
        if cid.codec() == RAW {
            return Some(FileCheck::RawBlock(sha2::Sha256::new()));
        }
        Params::for_cid(cid).map(|p| FileCheck::Dag(Importer::new(p)))
    }

    pub fn write(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match self {
            FileCheck::Dag(imp) => imp.write(bytes),
            FileCheck::RawBlock(h) => h.update(bytes),
        }
    }

    /// The CID the bytes have, in the form the check was made for.
    pub fn finish(self) -> Cid {
        use sha2::Digest;
        match self {
            FileCheck::Dag(imp) => imp.finish(),
            FileCheck::RawBlock(h) => {
                crate::cid::cid_from_digest(Version::V1, RAW, h.finalize().into())
            }
        }
    }
}
