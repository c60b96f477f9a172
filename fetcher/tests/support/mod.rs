//! Test support for the `fetcher` integration tests.
//!
//! Everything here is independent of the `fetcher` library:
//! - the IPFS test vectors (`tests/data/ipfs-vectors`) and their content generators;
//! - a CARv1 reader/writer, a dag-pb/UnixFS walker and a single-block UnixFS builder, used to
//!   produce CAR variants (dups=y/n, corrupted, truncated, extra or missing block);
//! - `TestGateway`, a scriptable HTTP/1.1 trustless gateway on 127.0.0.1;
//! - helpers that run the `fetcher` binary with a clean environment.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cid::multihash::Multihash;
use cid::Cid;
use serde::Deserialize;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

pub const CODEC_RAW: u64 = 0x55;
pub const CODEC_DAG_PB: u64 = 0x70;
pub const CODEC_DAG_CBOR: u64 = 0x71;
pub const MH_SHA2_256: u64 = 0x12;
pub const MH_SHA2_512: u64 = 0x13;

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Unsigned LEB128 varint, as used by multiformats and CAR framing.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| format!("varint runs past the end of the buffer at offset {}", *pos))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(format!(
        "varint longer than 10 bytes ending at offset {}",
        *pos
    ))
}

pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn usize_of(v: u64) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("length {v} does not fit in usize"))
}

/// End offset of the binary CID starting at `start`: CIDv0 is 34 bytes starting 0x12 0x20;
/// CIDv1 is varint version, varint codec, multihash (varint code, varint length, digest).
pub fn cid_end(buf: &[u8], start: usize) -> Result<usize, String> {
    if buf.get(start) == Some(&0x12) && buf.get(start + 1) == Some(&0x20) {
        let end = start + 34;
        if end > buf.len() {
            return Err(format!("CIDv0 at offset {start} runs past the end"));
        }
        return Ok(end);
    }
    let mut pos = start;
    let version = read_varint(buf, &mut pos)?;
    if version != 1 {
        return Err(format!("CID at offset {start} has version {version}"));
    }
    let _codec = read_varint(buf, &mut pos)?;
    let _code = read_varint(buf, &mut pos)?;
    let len = usize_of(read_varint(buf, &mut pos)?)?;
    let end = pos + len;
    if end > buf.len() {
        return Err(format!("CID at offset {start} runs past the end"));
    }
    Ok(end)
}

/// Blocks are identified by (codec, multihash bytes): a CIDv0 and its CIDv1 dag-pb form name
/// the same block.
pub type BlockKey = (u64, Vec<u8>);

pub fn key_of_cid(c: &Cid) -> BlockKey {
    (c.codec(), c.hash().to_bytes())
}

pub fn parse_cid(s: &str) -> Option<Cid> {
    Cid::try_from(s).ok()
}

pub fn key_of_str(s: &str) -> Option<BlockKey> {
    parse_cid(s).map(|c| key_of_cid(&c))
}

pub fn cid_v0_of(block: &[u8]) -> Cid {
    Cid::new_v0(Multihash::<64>::wrap(MH_SHA2_256, &sha256(block)).unwrap()).unwrap()
}

pub fn cid_v1_of(codec: u64, block: &[u8]) -> Cid {
    Cid::new_v1(
        codec,
        Multihash::<64>::wrap(MH_SHA2_256, &sha256(block)).unwrap(),
    )
}

/// A CIDv1 with an arbitrary codec and multihash code (e.g. dag-cbor, or sha2-512).
pub fn cid_with(codec: u64, mh_code: u64, digest: &[u8]) -> Cid {
    Cid::new_v1(codec, Multihash::<64>::wrap(mh_code, digest).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Vectors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub struct Generator {
    pub kind: String,
    #[serde(default)]
    pub seed: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub generator: Generator,
    pub cidv0: String,
    pub cidv1: String,
    pub kubo_cidv0: String,
    pub kubo_agrees: bool,
    pub cidv0_blocks: usize,
    pub cidv1_blocks: usize,
    pub dag_depth: u32,
    #[serde(default)]
    pub car: Option<String>,
    #[serde(default)]
    pub car_bytes: Option<u64>,
    #[serde(default)]
    pub car_v1: Option<String>,
    #[serde(default)]
    pub car_v1_bytes: Option<u64>,
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ipfs-vectors")
}

pub fn vectors() -> &'static [Vector] {
    static VECTORS: OnceLock<Vec<Vector>> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let path = data_dir().join("vectors.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    })
}

pub fn vector(name: &str) -> &'static Vector {
    vectors()
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector named {name}"))
}

/// Marsaglia xorshift64 (13/7/17), 8 little-endian bytes per step, state updated first.
pub fn xorshift64(seed: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 8);
    let mut x = seed;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

pub fn parse_seed(seed: &str) -> u64 {
    let digits = seed
        .strip_prefix("0x")
        .or_else(|| seed.strip_prefix("0X"))
        .unwrap_or(seed);
    u64::from_str_radix(digits, 16).unwrap_or_else(|e| panic!("bad seed {seed}: {e}"))
}

impl Vector {
    pub fn size_usize(&self) -> usize {
        usize::try_from(self.size).unwrap()
    }

    /// Regenerates the content (not checked; see `content`).
    pub fn generate(&self) -> Vec<u8> {
        match self.generator.kind.as_str() {
            "xorshift64" => {
                let seed = self
                    .generator
                    .seed
                    .as_deref()
                    .unwrap_or_else(|| panic!("{}: xorshift64 without seed", self.name));
                xorshift64(parse_seed(seed), self.size_usize())
            }
            "zeros" => vec![0; self.size_usize()],
            "text" => self
                .generator
                .text
                .clone()
                .unwrap_or_else(|| panic!("{}: text generator without text", self.name))
                .into_bytes(),
            other => panic!("{}: unknown generator kind {other}", self.name),
        }
    }

    /// Regenerated content, checked against the vector's size and sha256.
    pub fn content(&self) -> Vec<u8> {
        let data = self.generate();
        assert_eq!(
            data.len() as u64,
            self.size,
            "{}: regenerated size",
            self.name
        );
        assert_eq!(
            sha256_hex(&data),
            self.sha256,
            "{}: regenerated content does not match sha256",
            self.name
        );
        data
    }

    pub fn car_path(&self) -> Option<PathBuf> {
        self.car.as_ref().map(|n| data_dir().join(n))
    }

    pub fn car_v1_path(&self) -> Option<PathBuf> {
        self.car_v1.as_ref().map(|n| data_dir().join(n))
    }
}

/// Writes the vector's content to `dir/file_name` and returns the path.
pub fn write_vector(v: &Vector, dir: &Path, file_name: &str) -> PathBuf {
    let path = dir.join(file_name);
    std::fs::write(&path, v.content()).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// dag-pb / UnixFS (just enough protobuf to walk the DAG)
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum PbValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn pb_fields(buf: &[u8]) -> Result<Vec<(u64, PbValue<'_>)>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let tag = read_varint(buf, &mut pos)?;
        let field = tag >> 3;
        match tag & 7 {
            0 => out.push((field, PbValue::Varint(read_varint(buf, &mut pos)?))),
            1 => {
                pos += 8;
                out.push((field, PbValue::Fixed));
            }
            2 => {
                let len = usize_of(read_varint(buf, &mut pos)?)?;
                let end = pos + len;
                let bytes = buf
                    .get(pos..end)
                    .ok_or_else(|| format!("protobuf field {field} runs past the end"))?;
                out.push((field, PbValue::Bytes(bytes)));
                pos = end;
            }
            5 => {
                pos += 4;
                out.push((field, PbValue::Fixed));
            }
            w => return Err(format!("protobuf wire type {w} not supported")),
        }
    }
    if pos != buf.len() {
        return Err("protobuf runs past the end".into());
    }
    Ok(out)
}

/// The binary CIDs of a dag-pb node's links, in order.
pub fn dag_pb_links(node: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut links = Vec::new();
    for (field, value) in pb_fields(node)? {
        if let (2, PbValue::Bytes(link)) = (field, value) {
            for (lf, lv) in pb_fields(link)? {
                if let (1, PbValue::Bytes(hash)) = (lf, lv) {
                    links.push(hash.to_vec());
                }
            }
        }
    }
    Ok(links)
}

/// The file bytes held directly by a dag-pb UnixFS node (the `Data` field of its UnixFS `Data`).
pub fn dag_pb_unixfs_data(node: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (field, value) in pb_fields(node)? {
        if let (1, PbValue::Bytes(unixfs)) = (field, value) {
            for (uf, uv) in pb_fields(unixfs)? {
                if let (2, PbValue::Bytes(data)) = (uf, uv) {
                    out.extend_from_slice(data);
                }
            }
        }
    }
    Ok(out)
}

/// A single-block UnixFS file node as `ipfs add` (CIDv0, dag-pb leaves) writes it for content
/// of at most one chunk: PBNode{Data: UnixFS{Type: File, Data: content, filesize}}.
pub fn unixfs_single_block_v0(content: &[u8]) -> Vec<u8> {
    let mut unixfs = vec![0x08, 0x02];
    if !content.is_empty() {
        unixfs.push(0x12);
        write_varint(&mut unixfs, content.len() as u64);
        unixfs.extend_from_slice(content);
    }
    unixfs.push(0x18);
    write_varint(&mut unixfs, content.len() as u64);
    let mut node = vec![0x0a];
    write_varint(&mut node, unixfs.len() as u64);
    node.extend_from_slice(&unixfs);
    node
}

// ---------------------------------------------------------------------------------------------
// Blocks, block store and CARv1
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The binary CID exactly as written in the CAR (or the parent's link).
    pub cid: Vec<u8>,
    pub data: Vec<u8>,
}

impl Block {
    pub fn cid(&self) -> Cid {
        Cid::try_from(self.cid.as_slice())
            .unwrap_or_else(|e| panic!("bad CID bytes {}: {e}", hex(&self.cid)))
    }

    pub fn cid_string(&self) -> String {
        self.cid().to_string()
    }

    pub fn key(&self) -> BlockKey {
        key_of_cid(&self.cid())
    }

    pub fn codec(&self) -> u64 {
        self.cid().codec()
    }

    /// True when the CID's multihash is sha2-256 of the data.
    pub fn digest_matches(&self) -> bool {
        let c = self.cid();
        c.hash().code() == MH_SHA2_256 && c.hash().digest() == sha256(&self.data)
    }

    pub fn links(&self) -> Result<Vec<Vec<u8>>, String> {
        if self.codec() == CODEC_DAG_PB {
            dag_pb_links(&self.data)
        } else {
            Ok(Vec::new())
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BlockStore {
    pub blocks: HashMap<BlockKey, Block>,
}

impl BlockStore {
    pub fn insert(&mut self, block: Block) {
        self.blocks.insert(block.key(), block);
    }

    pub fn get(&self, key: &BlockKey) -> Option<&Block> {
        self.blocks.get(key)
    }

    pub fn get_str(&self, cid: &str) -> Option<&Block> {
        key_of_str(cid).and_then(|k| self.blocks.get(&k))
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Blocks in DFS pre-order from `root` (binary CID); each child block carries the CID as
    /// written in its parent's link. With `dups` a repeated block is emitted every time.
    pub fn dfs(&self, root: &[u8], dups: bool) -> Result<Vec<Block>, String> {
        fn visit(
            store: &BlockStore,
            cid: &[u8],
            dups: bool,
            seen: &mut HashSet<BlockKey>,
            out: &mut Vec<Block>,
        ) -> Result<(), String> {
            let c = Cid::try_from(cid).map_err(|e| format!("bad link CID: {e}"))?;
            let key = key_of_cid(&c);
            if !dups && seen.contains(&key) {
                return Ok(());
            }
            seen.insert(key.clone());
            let found = store
                .get(&key)
                .ok_or_else(|| format!("block {c} missing from the store"))?;
            let block = Block {
                cid: cid.to_vec(),
                data: found.data.clone(),
            };
            let links = block.links()?;
            out.push(block);
            for link in links {
                visit(store, &link, dups, seen, out)?;
            }
            Ok(())
        }
        let mut out = Vec::new();
        visit(self, root, dups, &mut HashSet::new(), &mut out)?;
        Ok(out)
    }

    /// The UnixFS file bytes under `root` (binary CID).
    pub fn file_bytes(&self, root: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for block in self.dfs(root, true)? {
            if block.codec() == CODEC_RAW {
                out.extend_from_slice(&block.data);
            } else {
                out.extend_from_slice(&dag_pb_unixfs_data(&block.data)?);
            }
        }
        Ok(out)
    }
}

/// A CARv1 header (varint length prefix included) for one root, as `@ipld/car` writes it:
/// dag-cbor `{roots: [root], version: 1}`.
pub fn car_header(root: &[u8]) -> Vec<u8> {
    let mut cbor = vec![0xa2, 0x65];
    cbor.extend_from_slice(b"roots");
    cbor.extend_from_slice(&[0x81, 0xd8, 0x2a]);
    let n = root.len() + 1;
    if n < 24 {
        cbor.push(0x40 + u8::try_from(n).unwrap());
    } else {
        cbor.push(0x58);
        cbor.push(u8::try_from(n).unwrap());
    }
    cbor.push(0x00);
    cbor.extend_from_slice(root);
    cbor.push(0x67);
    cbor.extend_from_slice(b"version");
    cbor.push(0x01);
    let mut out = Vec::new();
    write_varint(&mut out, cbor.len() as u64);
    out.extend_from_slice(&cbor);
    out
}

#[derive(Debug, Clone)]
pub struct Car {
    /// Everything up to the first frame: varint(header length) and the dag-cbor header.
    pub header: Vec<u8>,
    pub blocks: Vec<Block>,
}

impl Car {
    pub fn parse(bytes: &[u8]) -> Result<Car, String> {
        let mut pos = 0;
        let header_len = usize_of(read_varint(bytes, &mut pos)?)?;
        let header_end = pos + header_len;
        if header_end > bytes.len() {
            return Err(format!(
                "header claims {header_len} bytes, {} left",
                bytes.len() - pos
            ));
        }
        let header = bytes[..header_end].to_vec();
        pos = header_end;
        let mut blocks = Vec::new();
        while pos < bytes.len() {
            let frame_start = pos;
            let frame_len = usize_of(read_varint(bytes, &mut pos)?)?;
            let frame_end = pos + frame_len;
            if frame_end > bytes.len() {
                return Err(format!(
                    "frame at offset {frame_start} claims {frame_len} bytes, {} left",
                    bytes.len() - pos
                ));
            }
            let cid_end = cid_end(bytes, pos)?;
            if cid_end > frame_end {
                return Err(format!("CID of frame at offset {frame_start} overruns it"));
            }
            blocks.push(Block {
                cid: bytes[pos..cid_end].to_vec(),
                data: bytes[cid_end..frame_end].to_vec(),
            });
            pos = frame_end;
        }
        Ok(Car { header, blocks })
    }

    pub fn read(path: &Path) -> Car {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Car::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A committed CAR by file name.
    pub fn load(file_name: &str) -> Car {
        Car::read(&data_dir().join(file_name))
    }

    pub fn for_blocks(root: &[u8], blocks: Vec<Block>) -> Car {
        Car {
            header: car_header(root),
            blocks,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        for b in &self.blocks {
            write_varint(&mut out, (b.cid.len() + b.data.len()) as u64);
            out.extend_from_slice(&b.cid);
            out.extend_from_slice(&b.data);
        }
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_bytes()).unwrap();
    }

    /// The binary root CIDs in the header (tag 42 byte strings, without the 0x00 prefix).
    pub fn header_roots(&self) -> Vec<Vec<u8>> {
        let h = &self.header;
        let mut roots = Vec::new();
        let mut i = 0;
        while i + 3 < h.len() {
            if h[i] == 0xd8 && h[i + 1] == 0x2a {
                let (len, start) = match h[i + 2] {
                    b @ 0x40..=0x57 => (usize::from(b - 0x40), i + 3),
                    0x58 => (usize::from(h[i + 3]), i + 4),
                    _ => {
                        i += 1;
                        continue;
                    }
                };
                if let Some(bytes) = h.get(start..start + len) {
                    if bytes.first() == Some(&0) {
                        roots.push(bytes[1..].to_vec());
                    }
                }
                i = start + len;
            } else {
                i += 1;
            }
        }
        roots
    }

    pub fn root_bytes(&self) -> Vec<u8> {
        self.header_roots()
            .into_iter()
            .next()
            .expect("CAR header has a root")
    }

    pub fn root(&self) -> String {
        Cid::try_from(self.root_bytes().as_slice())
            .unwrap()
            .to_string()
    }

    pub fn store(&self) -> BlockStore {
        let mut store = BlockStore::default();
        for b in &self.blocks {
            store.insert(b.clone());
        }
        store
    }

    /// The same DAG in DFS pre-order, with (`dups = true`) or without repeated blocks.
    pub fn reordered(&self, dups: bool) -> Car {
        let blocks = self.store().dfs(&self.root_bytes(), dups).unwrap();
        Car {
            header: self.header.clone(),
            blocks,
        }
    }

    /// One byte of block `index`'s file bytes flipped (see `corrupt_block`; the CID stays).
    pub fn with_corrupted_block(&self, index: usize) -> Car {
        let mut car = self.clone();
        corrupt_block(&mut car.blocks[index]);
        car
    }

    pub fn without_block(&self, index: usize) -> Car {
        let mut car = self.clone();
        car.blocks.remove(index);
        car
    }

    pub fn with_extra_block(&self, block: Block) -> Car {
        let mut car = self.clone();
        car.blocks.push(block);
        car
    }

    /// The CAR's bytes cut in the middle of its last frame.
    pub fn truncated_bytes(&self) -> Vec<u8> {
        let mut bytes = self.to_bytes();
        let cut = truncation_point(self, bytes.len());
        bytes.truncate(cut);
        bytes
    }
}

/// One block as a CAR frame: varint(length), CID, data.
pub fn frame_bytes(block: &Block) -> Vec<u8> {
    let mut out = Vec::new();
    write_varint(&mut out, (block.cid.len() + block.data.len()) as u64);
    out.extend_from_slice(&block.cid);
    out.extend_from_slice(&block.data);
    out
}

/// An offset in the middle of the last frame of `car` (whose encoding is `len` bytes long).
fn truncation_point(car: &Car, len: usize) -> usize {
    match car.blocks.last() {
        Some(last) => len - last.data.len() / 2 - 1,
        None => len / 2,
    }
}

/// Where a block's file bytes sit: the UnixFS `Data` bytes inside a dag-pb node, or the whole
/// raw block. `None` when the block holds no file bytes.
pub fn payload_range(block: &Block) -> Option<std::ops::Range<usize>> {
    let data = &block.data;
    if block.codec() == CODEC_RAW {
        return (!data.is_empty()).then_some(0..data.len());
    }
    for (field, value) in pb_fields(data).ok()? {
        if let (1, PbValue::Bytes(unixfs)) = (field, value) {
            for (uf, uv) in pb_fields(unixfs).ok()? {
                if let (2, PbValue::Bytes(payload)) = (uf, uv) {
                    if !payload.is_empty() {
                        let start = payload.as_ptr() as usize - data.as_ptr() as usize;
                        return Some(start..start + payload.len());
                    }
                }
            }
        }
    }
    None
}

/// Flips one byte of the block's file bytes, so the block still parses (same structure, same
/// links) and only its hash is wrong. A dag-pb node without file bytes (an internal node, the
/// empty file) gets the low bit of its last byte flipped instead: that byte ends the UnixFS
/// `Data` (filesize or a blocksize varint), so the node still parses.
pub fn corrupt_block(block: &mut Block) {
    match payload_range(block) {
        Some(r) => block.data[r.start + r.len() / 2] ^= 0xff,
        None => match block.data.last_mut() {
            Some(last) => *last ^= 0x01,
            None => block.data.push(0),
        },
    }
}

pub fn flip_byte(data: &mut Vec<u8>) {
    if data.is_empty() {
        data.push(0xff);
    } else {
        let i = data.len() / 2;
        data[i] ^= 0xff;
    }
}

/// A valid block that belongs to no vector's DAG.
pub fn unrelated_block() -> Block {
    let data = b"an unrelated block\n".to_vec();
    Block {
        cid: cid_v1_of(CODEC_RAW, &data).to_bytes(),
        data,
    }
}

// ---------------------------------------------------------------------------------------------
// DAGs a gateway serves
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Dag {
    /// The root CID as a string (as written in the CAR header).
    pub root: String,
    pub root_key: BlockKey,
    /// The CAR with dups=n in DFS pre-order; `None` for a DAG only served as a plain file.
    pub car: Option<Car>,
    pub store: BlockStore,
    /// The file bytes (what a plain `GET /ipfs/{cid}` returns).
    pub file: Vec<u8>,
}

impl Dag {
    pub fn from_car(car: Car) -> Dag {
        let store = car.store();
        let root_bytes = car.root_bytes();
        let file = store.file_bytes(&root_bytes).unwrap();
        let root_cid = Cid::try_from(root_bytes.as_slice()).unwrap();
        Dag {
            root: root_cid.to_string(),
            root_key: key_of_cid(&root_cid),
            car: Some(car),
            store,
            file,
        }
    }

    /// The committed CIDv0 CAR of a vector.
    pub fn v0(name: &str) -> Dag {
        let v = vector(name);
        let dag = Dag::from_car(Car::load(
            v.car
                .as_deref()
                .unwrap_or_else(|| panic!("{name} has no CAR")),
        ));
        assert_eq!(dag.root, v.cidv0);
        assert_eq!(sha256_hex(&dag.file), v.sha256, "{name}: file from CAR");
        dag
    }

    /// The committed CIDv1 CAR of a vector.
    pub fn v1(name: &str) -> Dag {
        let v = vector(name);
        let dag = Dag::from_car(Car::load(
            v.car_v1
                .as_deref()
                .unwrap_or_else(|| panic!("{name} has no v1 CAR")),
        ));
        assert_eq!(dag.root, v.cidv1);
        assert_eq!(sha256_hex(&dag.file), v.sha256, "{name}: file from v1 CAR");
        dag
    }

    /// A single-block file (at most 262144 bytes) as `ipfs add` would store it: a dag-pb UnixFS
    /// node under CIDv0, or a raw block under CIDv1.
    pub fn single_block(content: &[u8], v1: bool) -> Dag {
        assert!(content.len() <= 262_144, "single_block is for one chunk");
        let block = if v1 {
            Block {
                cid: cid_v1_of(CODEC_RAW, content).to_bytes(),
                data: content.to_vec(),
            }
        } else {
            let node = unixfs_single_block_v0(content);
            Block {
                cid: cid_v0_of(&node).to_bytes(),
                data: node,
            }
        };
        let car = Car::for_blocks(&block.cid.clone(), vec![block]);
        Dag::from_car(car)
    }

    /// A file only a plain GET can serve (no blocks known), e.g. the vectors without a CAR.
    pub fn plain_only(cid: &str, file: Vec<u8>) -> Dag {
        Dag {
            root: cid.to_string(),
            root_key: key_of_str(cid).expect("valid CID"),
            car: None,
            store: BlockStore::default(),
            file,
        }
    }

    /// Block CIDs (strings, as written) in DFS pre-order without duplicates.
    pub fn dfs_cids(&self) -> Vec<String> {
        self.car
            .as_ref()
            .map(|c| c.blocks.iter().map(Block::cid_string).collect())
            .unwrap_or_default()
    }

    /// The block a `Fault::CorruptBlock` gateway corrupts: the last one in DFS order (a leaf).
    pub fn corrupt_target(&self) -> Option<Block> {
        self.car.as_ref().and_then(|c| c.blocks.last().cloned())
    }
}

// ---------------------------------------------------------------------------------------------
// TestGateway
// ---------------------------------------------------------------------------------------------

/// Which response forms the gateway offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// CAR, raw blocks and plain files.
    Car,
    /// Refuses CAR requests (with `refuse_status`), serves raw blocks and plain files.
    RawOnly,
    /// Refuses CAR and raw requests, serves plain files only.
    PlainOnly,
    /// Ignores `format`/`Accept`: always 200 with the file bytes as application/octet-stream.
    Legacy,
}

/// Duplicate handling in CAR responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dups {
    /// A repeated block is sent once (the committed CARs).
    No,
    /// A repeated block is sent every time it occurs.
    Yes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// One byte of file data flipped (`corrupt_block`) in the last DFS block of the DAG, in CAR
    /// and raw responses.
    CorruptBlock,
    /// One byte flipped in the plain file response.
    WrongPlainBytes,
    /// CAR: headers with the full Content-Length, then the body cut mid-frame, then close.
    TruncatedCar,
    /// CAR: no Content-Length, the body cut mid-frame, then close (EOF-delimited body).
    TruncatedCarEof,
    /// CAR: an unrelated (but valid) block appended.
    ExtraBlock,
    /// CAR: the frame at this index dropped.
    MissingBlock(usize),
    /// The first `count` requests answer `status` (500, 429, ...), then normal service.
    FailFirst {
        status: u16,
        count: usize,
    },
    /// Read the request, never answer (the connection stays open).
    HangBeforeResponse,
    /// Send the headers and half the body, then stall.
    HangMidBody,
    /// 404 for everything.
    NotFound,
    /// Every body (CAR, raw, plain) without a Content-Length and never ending: the real
    /// bytes, then plain and raw bodies repeat themselves and a CAR repeats its last frame,
    /// until the client goes away.
    EndlessBody,
    /// Every body (CAR, raw, plain) with its true Content-Length, one byte per interval.
    Drip(Duration),
    /// Plain bodies declare this Content-Length (a lie) and send the real file.
    DeclaredLength(u64),
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub offer: Offer,
    pub dups: Dups,
    /// Status for refused formats (406 unless set).
    pub refuse_status: u16,
    pub fault: Fault,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            offer: Offer::Car,
            dups: Dups::No,
            refuse_status: 406,
            fault: Fault::None,
        }
    }
}

impl GatewayConfig {
    pub fn offer(mut self, offer: Offer) -> Self {
        self.offer = offer;
        self
    }
    pub fn dups(mut self, dups: Dups) -> Self {
        self.dups = dups;
        self
    }
    pub fn refuse_status(mut self, status: u16) -> Self {
        self.refuse_status = status;
        self
    }
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Car,
    Raw,
    Plain,
}

/// A request as the gateway saw it, with the status it answered (0 = never answered).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub accept: Option<String>,
    pub kind: Kind,
    /// The CID in `/ipfs/{cid}`, if the path had that form.
    pub cid: Option<String>,
    pub key: Option<BlockKey>,
    pub status: u16,
}

#[derive(Debug)]
struct Shared {
    dags: Vec<Dag>,
    cfg: GatewayConfig,
    stop: AtomicBool,
    counter: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

/// An HTTP/1.1 gateway on 127.0.0.1 (one thread per connection, `Connection: close`).
/// Stops its threads when dropped.
#[derive(Debug)]
pub struct TestGateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HANG: Duration = Duration::from_secs(90);

impl TestGateway {
    pub fn start(dags: Vec<Dag>, cfg: GatewayConfig) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            dags,
            cfg,
            stop: AtomicBool::new(false),
            counter: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("test-gateway-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &accept_shared))
            .unwrap();
        TestGateway {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// A normal gateway (CAR, raw and plain; dups=n).
    pub fn serving(dags: Vec<Dag>) -> TestGateway {
        TestGateway::start(dags, GatewayConfig::default())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as error messages should name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/ipfs`
    pub fn url_ipfs(&self) -> String {
        format!("http://{}/ipfs", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Requests naming the same block as `cid` (CIDv0 and CIDv1 dag-pb forms count alike).
    pub fn requests_for(&self, cid: &str) -> Vec<Recorded> {
        let key = key_of_str(cid);
        self.requests()
            .into_iter()
            .filter(|r| r.key.is_some() && r.key == key)
            .collect()
    }

    /// A one-line summary of the requests, for assertion messages.
    pub fn log(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {}?{} accept={:?} -> {}",
                    r.method, r.path, r.query, r.accept, r.status
                )
            })
            .collect::<Vec<_>>()
            .join("\n    ")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
        let conns = std::mem::take(&mut *lock(&self.shared.conns));
        for handle in conns {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let conn_shared = Arc::clone(shared);
                let handle = std::thread::spawn(move || handle_conn(&conn_shared, stream));
                lock(&shared.conns).push(handle);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    query: String,
    accept: Option<String>,
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let mut accept = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("accept") {
                accept = Some(value.trim().to_string());
            }
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path,
        query,
        accept,
    })
}

fn request_kind(req: &Request) -> Kind {
    for pair in req.query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            if k == "format" {
                match v {
                    "car" => return Kind::Car,
                    "raw" => return Kind::Raw,
                    _ => {}
                }
            }
        }
    }
    match req.accept.as_deref() {
        Some(a) if a.contains("application/vnd.ipld.car") => Kind::Car,
        Some(a) if a.contains("application/vnd.ipld.raw") => Kind::Raw,
        _ => Kind::Plain,
    }
}

#[derive(Debug)]
enum BodyMode {
    Full,
    /// Full Content-Length declared, only this many bytes sent, then close.
    CutWithLength(usize),
    /// No Content-Length, only this many bytes sent, then close.
    CutEof(usize),
    /// Full Content-Length declared, this many bytes sent, then stall.
    StallAfter(usize),
    /// No Content-Length; the body, then `repeat` again and again until the client leaves.
    Endless {
        repeat: Vec<u8>,
    },
    /// Full Content-Length declared, one byte per interval.
    Drip(Duration),
    /// This Content-Length declared, whatever the body's length, then the body and close.
    Declared(u64),
}

#[derive(Debug)]
enum Reply {
    Status(u16, String),
    Body {
        status: u16,
        content_type: String,
        body: Vec<u8>,
        mode: BodyMode,
    },
    Hang,
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Status(s, _) | Reply::Body { status: s, .. } => *s,
            Reply::Hang => 0,
        }
    }
}

fn body(content_type: &str, body: Vec<u8>, fault: &Fault) -> Reply {
    let mode = match fault {
        Fault::HangMidBody => BodyMode::StallAfter(body.len() / 2),
        Fault::EndlessBody if body.is_empty() => BodyMode::Endless { repeat: vec![0] },
        Fault::EndlessBody => BodyMode::Endless {
            repeat: body.clone(),
        },
        Fault::Drip(every) => BodyMode::Drip(*every),
        Fault::DeclaredLength(n) if content_type == "application/octet-stream" => {
            BodyMode::Declared(*n)
        }
        _ => BodyMode::Full,
    };
    Reply::Body {
        status: 200,
        content_type: content_type.to_string(),
        body,
        mode,
    }
}

fn decide(shared: &Shared, req: &Request, kind: Kind, n: usize) -> Reply {
    let cfg = &shared.cfg;
    match &cfg.fault {
        Fault::NotFound => return Reply::Status(404, "not found (test gateway)".into()),
        Fault::FailFirst { status, count } if n < *count => {
            return Reply::Status(*status, "scripted failure (test gateway)".into());
        }
        Fault::HangBeforeResponse => return Reply::Hang,
        _ => {}
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Reply::Status(405, "method not allowed".into());
    }
    let Some(cid_str) = req.path.strip_prefix("/ipfs/") else {
        return Reply::Status(404, format!("no route for {}", req.path));
    };
    let cid_str = cid_str.trim_end_matches('/');
    let Some(key) = key_of_str(cid_str) else {
        return Reply::Status(400, format!("invalid CID {cid_str}"));
    };
    let dag = shared.dags.iter().find(|d| d.root_key == key);
    let block = shared.dags.iter().find_map(|d| d.store.get(&key));
    let is_corrupt_target = cfg.fault == Fault::CorruptBlock
        && shared
            .dags
            .iter()
            .any(|d| d.corrupt_target().is_some_and(|b| b.key() == key));

    let plain = |fault: &Fault| -> Reply {
        let bytes = if let Some(d) = dag {
            d.file.clone()
        } else if let Some(b) = block {
            let store = &shared
                .dags
                .iter()
                .find(|d| d.store.get(&key).is_some())
                .unwrap()
                .store;
            match store.file_bytes(&b.cid) {
                Ok(f) => f,
                Err(e) => return Reply::Status(500, e),
            }
        } else {
            return Reply::Status(404, format!("{cid_str} not found"));
        };
        let mut bytes = bytes;
        if *fault == Fault::WrongPlainBytes {
            flip_byte(&mut bytes);
        }
        body("application/octet-stream", bytes, fault)
    };

    match (kind, cfg.offer) {
        (_, Offer::Legacy) | (Kind::Plain, _) => plain(&cfg.fault),
        (Kind::Car, Offer::RawOnly | Offer::PlainOnly) | (Kind::Raw, Offer::PlainOnly) => {
            Reply::Status(
                cfg.refuse_status,
                "format not offered (test gateway)".into(),
            )
        }
        (Kind::Raw, Offer::Car | Offer::RawOnly) => {
            let Some(b) = block else {
                return Reply::Status(404, format!("{cid_str} not found"));
            };
            let mut b = b.clone();
            if is_corrupt_target {
                corrupt_block(&mut b);
            }
            body("application/vnd.ipld.raw", b.data, &cfg.fault)
        }
        (Kind::Car, Offer::Car) => {
            let Some(car) = dag.and_then(|d| d.car.as_ref()) else {
                return Reply::Status(404, format!("{cid_str} not found"));
            };
            let dag = dag.unwrap();
            let mut car = match cfg.dups {
                Dups::No => car.clone(),
                Dups::Yes => car.reordered(true),
            };
            let target = dag.corrupt_target().map(|b| b.key());
            match &cfg.fault {
                Fault::CorruptBlock => {
                    for b in &mut car.blocks {
                        if Some(b.key()) == target {
                            corrupt_block(b);
                        }
                    }
                }
                Fault::ExtraBlock => car = car.with_extra_block(unrelated_block()),
                Fault::MissingBlock(i) => car = car.without_block(*i),
                _ => {}
            }
            let bytes = car.to_bytes();
            let content_type = format!(
                "application/vnd.ipld.car;version=1;order=dfs;dups={}",
                if cfg.dups == Dups::Yes { "y" } else { "n" }
            );
            let mode = match cfg.fault {
                Fault::TruncatedCar => BodyMode::CutWithLength(truncation_point(&car, bytes.len())),
                Fault::TruncatedCarEof => BodyMode::CutEof(truncation_point(&car, bytes.len())),
                Fault::HangMidBody => BodyMode::StallAfter(bytes.len() / 2),
                Fault::EndlessBody => BodyMode::Endless {
                    repeat: car
                        .blocks
                        .last()
                        .map(frame_bytes)
                        .unwrap_or_else(|| vec![0]),
                },
                Fault::Drip(every) => BodyMode::Drip(every),
                _ => BodyMode::Full,
            };
            Reply::Body {
                status: 200,
                content_type,
                body: bytes,
                mode,
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn hang(shared: &Shared) {
    let start = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) && start.elapsed() < MAX_HANG {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn handle_conn(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(SOCKET_TIMEOUT));
    let _ = stream.set_write_timeout(Some(SOCKET_TIMEOUT));
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let kind = request_kind(&req);
    let n = shared.counter.fetch_add(1, Ordering::SeqCst);
    let reply = decide(shared, &req, kind, n);
    let cid = req.path.strip_prefix("/ipfs/").map(|c| c.to_string());
    let key = cid.as_deref().and_then(key_of_str);
    lock(&shared.requests).push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        accept: req.accept.clone(),
        kind,
        cid,
        key,
        status: reply.status(),
    });
    let head_only = req.method == "HEAD";
    match reply {
        Reply::Hang => {
            hang(shared);
            return;
        }
        Reply::Status(status, message) => {
            let msg = format!("{message}\n");
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reason(status),
                msg.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if !head_only {
                let _ = stream.write_all(msg.as_bytes());
            }
        }
        Reply::Body {
            status,
            content_type,
            body,
            mode,
        } => {
            let length = match mode {
                BodyMode::CutEof(_) | BodyMode::Endless { .. } => String::new(),
                BodyMode::Declared(n) => format!("Content-Length: {n}\r\n"),
                _ => format!("Content-Length: {}\r\n", body.len()),
            };
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n{length}Connection: close\r\n\r\n",
                reason(status)
            );
            if stream.write_all(head.as_bytes()).is_err() || head_only {
                finish(stream);
                return;
            }
            match mode {
                BodyMode::Full | BodyMode::Declared(_) => {
                    let _ = stream.write_all(&body);
                }
                BodyMode::Endless { repeat } => {
                    let start = Instant::now();
                    let mut sent = stream.write_all(&body);
                    while sent.is_ok()
                        && !shared.stop.load(Ordering::SeqCst)
                        && start.elapsed() < MAX_HANG
                    {
                        sent = stream.write_all(&repeat);
                    }
                    // The client left (or we stop): no orderly close to wait for.
                    return;
                }
                BodyMode::Drip(every) => {
                    for byte in &body {
                        if shared.stop.load(Ordering::SeqCst)
                            || stream.write_all(std::slice::from_ref(byte)).is_err()
                            || stream.flush().is_err()
                        {
                            return;
                        }
                        std::thread::sleep(every);
                    }
                }
                BodyMode::CutWithLength(cut) | BodyMode::CutEof(cut) => {
                    let _ = stream.write_all(&body[..cut]);
                }
                BodyMode::StallAfter(cut) => {
                    let _ = stream.write_all(&body[..cut]);
                    let _ = stream.flush();
                    hang(shared);
                    return;
                }
            }
        }
    }
    finish(stream);
}

/// Closes our side, then drains briefly so the close is a FIN, not an RST.
fn finish(mut stream: TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// (status, lower-cased headers, body)
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.1 client for testing the gateway itself.
pub fn http_get(
    addr: SocketAddr,
    target: &str,
    accept: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, raw[head_end + 4..].to_vec()))
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// Environment variables the binary reads; removed for every run.
/// (`LOG_FORMAT` too: the human format is what the assertions read.)
pub const FETCHER_ENV: [&str; 6] = [
    "IPFS_GATEWAY",
    "WASM_CID",
    "INPUT_CID",
    "FETCH_DIR",
    "RUST_LOG",
    "LOG_FORMAT",
];

/// Upper bound on any single run, so a hung binary fails a test instead of blocking it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// `fetcher` with a clean environment.
pub fn fetcher() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("fetcher")
        .expect("the fetcher binary (cargo builds it for integration tests)");
    for var in FETCHER_ENV {
        cmd.env_remove(var);
    }
    cmd.timeout(RUN_TIMEOUT);
    cmd
}

/// `fetcher get --retries 2 --backoff-ms 10` with a clean environment.
pub fn fetcher_get() -> assert_cmd::Command {
    let mut cmd = fetcher();
    cmd.args(["get", "--retries", "2", "--backoff-ms", "10"]);
    cmd
}

#[derive(Debug)]
pub struct Run {
    pub cmdline: String,
    /// `None` when killed (e.g. by `RUN_TIMEOUT`).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

pub fn run(cmd: &mut assert_cmd::Command) -> Run {
    let cmdline = format!("{cmd:?}");
    let start = Instant::now();
    let out = cmd.output().expect("spawn fetcher");
    let r = Run {
        cmdline,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    };
    // `FETCHER_TEST_SHOW=1 cargo test -- --nocapture` shows every run.
    if std::env::var_os("FETCHER_TEST_SHOW").is_some() {
        eprintln!("---\n{}", r.describe());
    }
    r
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… [{} bytes more]", &s[..end], s.len() - end)
    }
}

impl Run {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit: {:?} after {:.2?}\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.code,
            self.elapsed,
            clip(&self.stdout, 2000),
            clip(&self.stderr, 6000)
        )
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    /// Logs go to stderr; stdout is only for `cid` output.
    #[track_caller]
    pub fn expect_quiet_stdout(&self) -> &Run {
        assert!(
            self.stdout.is_empty(),
            "stdout must stay empty (logs go to stderr)\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn expect_success(&self) -> &Run {
        self.expect_code(0)
    }

    /// Case-insensitive: stderr mentions at least one of `needles`.
    #[track_caller]
    pub fn expect_stderr_mentions_any(&self, needles: &[&str], what: &str) -> &Run {
        let err = self.stderr.to_lowercase();
        assert!(
            needles.iter().any(|n| err.contains(&n.to_lowercase())),
            "stderr should name {what} (one of {needles:?})\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn expect_stderr_mentions(&self, needle: &str, what: &str) -> &Run {
        self.expect_stderr_mentions_any(&[needle], what)
    }
}

/// Names of the entries in `dir`, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// After a failure: the target does not exist and its directory holds nothing (no temp file).
#[track_caller]
pub fn assert_nothing_left(target: &Path, run: &Run) {
    assert!(
        !target.exists(),
        "{} must not exist after a failed fetch\n{}",
        target.display(),
        run.describe()
    );
    let dir = target.parent().unwrap();
    let left = dir_entries(dir);
    assert!(
        left.is_empty(),
        "{} should be empty after a failed fetch (temp files?), holds {left:?}\n{}",
        dir.display(),
        run.describe()
    );
}

/// After a success: `dir` holds exactly `names` (no temp file left).
#[track_caller]
pub fn assert_only_files(dir: &Path, names: &[&str], run: &Run) {
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        dir_entries(dir),
        expected,
        "files in {}\n{}",
        dir.display(),
        run.describe()
    );
}

#[track_caller]
pub fn assert_file_sha256(path: &Path, expected: &str, run: &Run) {
    let data = std::fs::read(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}\n{}", path.display(), run.describe()));
    assert_eq!(
        sha256_hex(&data),
        expected,
        "sha256 of {} ({} bytes)\n{}",
        path.display(),
        data.len(),
        run.describe()
    );
}
