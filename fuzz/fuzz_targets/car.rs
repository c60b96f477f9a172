//! The CAR decoder (`fetcher::car::CarDecoder`) and, driven by it as `verify_car_file` does,
//! the DAG verifier (`fetcher::verify::DagVerifier`): a gateway's `?format=car` answer is
//! read by these, byte for byte as it arrives.
//!
//! The first byte picks one of two modes.
//!
//! Raw (even first byte): the rest is the CAR stream, pushed in chunks of fuzzed sizes. The
//! decoder must give the same frames, the same error and the same end as when the stream is
//! pushed whole (chunking is the network's choice, never a reason to differ); no frame may
//! be longer than `MAX_FRAME_LEN`; and the verifier, rooted at the header's first root, must
//! only ask to copy bytes already written and never write past its size cap.
//!
//! DAG (odd first byte): the rest describes a UnixFS file DAG (raw and dag-pb nodes, shared
//! subtrees, CIDv0 and v1), which is encoded honestly and then damaged by fuzzed edits
//! (bytes changed, frames dropped, repeated, swapped or inserted, the end cut). Whatever the
//! stream, a fetch that succeeds must have written exactly the file the root CID names, and
//! within the cap; the honest stream must succeed whenever the file fits the cap.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cid::{Cid, Version};
use fetcher::car::{self, CarDecoder, MAX_FRAME_LEN};
use fetcher::cid::{cid_of, DAG_PB, RAW};
use fetcher::dagpb::{self, Link, Node};
use fetcher::pb::put_varint;
use fetcher::unixfs;
use fetcher::verify::{DagVerifier, Emit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw_stream(mode, rest);
    } else if let Ok(case) = DagCase::arbitrary_take_rest(Unstructured::new(rest)) {
        damaged_dag(mode, case);
    }
});

/// Chunk sizes from a small generator: 1..=max bytes each, the pattern fixed by `seed`.
struct Chunks {
    state: u32,
    max: usize,
}

impl Chunks {
    fn new(seed: u8) -> Self {
        let max = [1, 2, 3, 7, 64, 1000, 1 << 20][usize::from(seed >> 1) % 7];
        Self {
            state: u32::from(seed).wrapping_mul(2_654_435_761) | 1,
            max,
        }
    }

    fn split<'a>(&mut self, mut bytes: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            let n = (self.state as usize % self.max + 1).min(bytes.len());
            let (piece, rest) = bytes.split_at(n);
            out.push(piece);
            bytes = rest;
        }
        out
    }
}

/// What the decoder made of a stream: the frames before the first error, the error, and
/// whether `finish` accepted the end (only asked when no frame failed).
#[derive(Debug, PartialEq)]
struct Decoded {
    roots: Option<Vec<Cid>>,
    frames: Vec<(Cid, Vec<u8>)>,
    error: Option<String>,
    finished: Option<bool>,
}

fn decode(pieces: &[&[u8]]) -> Decoded {
    let mut d = CarDecoder::new();
    let mut frames = Vec::new();
    for piece in pieces {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        roots: d.roots().map(<[Cid]>::to_vec),
                        frames,
                        error: Some(e.to_string()),
                        finished: None,
                    }
                }
            }
        }
    }
    Decoded {
        roots: d.roots().map(<[Cid]>::to_vec),
        frames,
        error: None,
        finished: Some(d.finish().is_ok()),
    }
}

fn raw_stream(mode: u8, stream: &[u8]) {
    let whole = decode(&[stream]);
    let pieces = Chunks::new(mode).split(stream);
    let chunked = decode(&pieces);
    assert_eq!(whole, chunked, "the chunking changed the outcome");
    if let Some(roots) = &whole.roots {
        assert!(roots.len() <= 64, "{} roots", roots.len());
    }
    for (cid, block) in &whole.frames {
        assert!(
            (cid.encoded_len() + block.len()) as u64 <= MAX_FRAME_LEN,
            "a frame of {} bytes",
            block.len()
        );
    }
    // The verifier behind it, rooted at the header's first root as a fetch of it would be.
    if let Some(root) = whole.roots.as_ref().and_then(|r| r.first()) {
        let max = u64::from(mode) * 4096;
        let _ = fetch(*root, max, &pieces);
    }
}

/// `verify_car_file` with the output in memory: the file, or why the fetch failed.
fn fetch(root: Cid, max_size: u64, pieces: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut decoder = CarDecoder::new();
    let mut verifier = DagVerifier::new(root, max_size);
    let mut out = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        while let Some((cid, block)) = decoder.next_frame().map_err(|e| e.to_string())? {
            let emits = verifier.accept(&cid, &block).map_err(|e| e.to_string())?;
            apply(&mut out, &block, emits);
            assert_eq!(out.len() as u64, verifier.written());
        }
    }
    decoder.finish().map_err(|e| e.to_string())?;
    let emits = verifier.finish().map_err(|e| e.to_string())?;
    apply(&mut out, &[], emits);
    assert_eq!(out.len() as u64, verifier.written());
    assert!(
        out.len() as u64 <= max_size,
        "{} bytes written over the cap of {max_size}",
        out.len()
    );
    Ok(out)
}

/// `Output::apply`, checking that every instruction stays within what exists.
fn apply(out: &mut Vec<u8>, block: &[u8], emits: Vec<Emit>) {
    for emit in emits {
        match emit {
            Emit::Data(r) => {
                assert!(
                    r.end <= block.len(),
                    "{r:?} of a {}-byte block",
                    block.len()
                );
                out.extend_from_slice(&block[r]);
            }
            Emit::Copy { offset, len } => {
                let end = offset.checked_add(len).expect("copy range overflows");
                assert!(
                    end <= out.len() as u64,
                    "copy of {offset}..{end} with {} bytes written",
                    out.len()
                );
                out.extend_from_within(offset as usize..end as usize);
            }
        }
    }
}

/// A file DAG: node `i` may link only to nodes before it; the last node is the root.
#[derive(Debug, Arbitrary)]
struct DagCase {
    nodes: Vec<NodeSpec>,
    max_size: u16,
    edits: Vec<Edit>,
}

#[derive(Debug, Arbitrary)]
enum NodeSpec {
    Raw(Vec<u8>),
    File {
        v0: bool,
        data: Option<Vec<u8>>,
        /// Children, as distances back from this node.
        children: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
enum Edit {
    SetByte {
        at: u16,
        byte: u8,
    },
    DropFrame(u8),
    RepeatFrame(u8),
    SwapFrames(u8, u8),
    /// A frame of these bytes (a CID and a block, or garbage), inserted before frame `at`.
    InsertFrame {
        at: u8,
        bytes: Vec<u8>,
    },
    Truncate(u16),
}

const MAX_FILE: usize = 1 << 20;

/// Builds the blocks bottom-up; returns them with their CIDs and file contents.
fn build(nodes: &[NodeSpec]) -> Vec<(Cid, Vec<u8>, Vec<u8>)> {
    let mut built: Vec<(Cid, Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, spec) in nodes.iter().take(24).enumerate() {
        let node = match spec {
            NodeSpec::Raw(bytes) => (
                cid_of(Version::V1, RAW, bytes),
                bytes.clone(),
                bytes.clone(),
            ),
            NodeSpec::File { v0, data, children } => {
                let kids: Vec<usize> = if i == 0 {
                    Vec::new()
                } else {
                    children
                        .iter()
                        .take(8)
                        .map(|d| i - 1 - usize::from(*d) % i)
                        .collect()
                };
                let mut content = data.clone().unwrap_or_default();
                let mut links = Vec::new();
                let mut sizes = Vec::new();
                for k in &kids {
                    let (cid, block, file) = &built[*k];
                    // Shared subtrees make a file exponential in the DAG's size: the file is
                    // kept under 1 MiB (the cap is at most 64 KiB, so the over-the-cap case
                    // is still reached).
                    if content.len() + file.len() > MAX_FILE {
                        break;
                    }
                    content.extend_from_slice(file);
                    sizes.push(file.len() as u64);
                    links.push(Link {
                        cid: *cid,
                        name: Some(Vec::new()),
                        tsize: Some(block.len() as u64),
                    });
                }
                let payload = unixfs::encode_file(data.as_deref(), content.len() as u64, &sizes);
                let block = dagpb::encode(&Node {
                    links,
                    data: Some(&payload),
                });
                let version = if *v0 { Version::V0 } else { Version::V1 };
                (cid_of(version, DAG_PB, &block), block, content)
            }
        };
        built.push(node);
    }
    built
}

/// Splits a CAR into its header section and frame sections (each with its length prefix).
fn sections(car: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut parts = Vec::new();
    let mut rest = car;
    while !rest.is_empty() {
        let (len, used) = fetcher::pb::read_varint(rest).expect("our own CAR");
        let end = used + len as usize;
        parts.push(rest[..end].to_vec());
        rest = &rest[end..];
    }
    let header = parts.remove(0);
    (header, parts)
}

fn damaged_dag(mode: u8, case: DagCase) {
    let built = build(&case.nodes);
    let Some((root, _, expected)) = built.last().cloned() else {
        return;
    };
    let blocks: Vec<(Cid, Vec<u8>)> = built.iter().map(|(c, b, _)| (*c, b.clone())).collect();
    let honest = car::encode(&root, &blocks);
    let max_size = u64::from(case.max_size);
    let pieces = Chunks::new(mode).split(&honest);
    match fetch(root, max_size, &pieces) {
        Ok(file) => assert_eq!(file, expected, "the honest stream gave another file"),
        Err(e) => assert!(
            expected.len() as u64 > max_size,
            "the honest stream of a {}-byte file (cap {max_size}) failed: {e}",
            expected.len()
        ),
    }

    let (header, mut frames) = sections(&honest);
    let mut tail_cut = None;
    for edit in case.edits.iter().take(8) {
        let n = frames.len();
        match edit {
            Edit::SetByte { at, byte } => {
                let total: usize = frames.iter().map(Vec::len).sum();
                if total > 0 {
                    let mut at = usize::from(*at) % total;
                    for f in &mut frames {
                        if at < f.len() {
                            f[at] = *byte;
                            break;
                        }
                        at -= f.len();
                    }
                }
            }
            Edit::DropFrame(i) if n > 0 => {
                frames.remove(usize::from(*i) % n);
            }
            Edit::RepeatFrame(i) if n > 0 => {
                let f = frames[usize::from(*i) % n].clone();
                frames.insert(usize::from(*i) % n, f);
            }
            Edit::SwapFrames(i, j) if n > 0 => {
                frames.swap(usize::from(*i) % n, usize::from(*j) % n)
            }
            Edit::InsertFrame { at, bytes } => {
                let mut f = Vec::new();
                put_varint(&mut f, bytes.len() as u64);
                f.extend_from_slice(bytes);
                frames.insert(usize::from(*at) % (n + 1), f);
            }
            Edit::Truncate(cut) => tail_cut = Some(usize::from(*cut)),
            _ => {}
        }
    }
    let mut stream = header;
    stream.extend(frames.concat());
    if let Some(cut) = tail_cut {
        stream.truncate(stream.len().saturating_sub(cut));
    }
    let pieces = Chunks::new(mode.rotate_left(3)).split(&stream);
    if let Ok(file) = fetch(root, max_size, &pieces) {
        assert_eq!(
            file, expected,
            "a damaged stream was accepted as another file"
        );
    }
}
