//! dag-pb and UnixFS decoding (`fetcher::dagpb::decode`, `fetcher::unixfs::decode`, on the
//! hand-written protobuf reader `fetcher::pb`): every block a gateway sends is decoded by
//! these before anything else is known about it, so they see attacker-chosen bytes.
//!
//! Checks, besides "no panic": decoding is stable under re-encoding (`decode(encode(n)) ==
//! n`, for dag-pb nodes and UnixFS file nodes); every slice a decoder returns lies inside
//! its input; and the input taken as a block whose CID matches (so hashing passes and the
//! verifier's walk runs on it) gives a file range inside the block, only supported child
//! CIDs, and output instructions that add up to what the verifier says it wrote.
#![no_main]

use cid::Version;
use fetcher::cid::{check_supported, cid_of, DAG_PB, RAW};
use fetcher::dagpb;
use fetcher::unixfs;
use fetcher::verify::{declared_size, interpret, DagVerifier, Emit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = dagpb::decode(data) {
        if let Some(d) = node.data {
            assert!(within(d, data), "Data outside the block");
        }
        let again = dagpb::encode(&node);
        let back = dagpb::decode(&again).unwrap_or_else(|e| panic!("re-encoded node: {e}"));
        assert_eq!(back, node, "dag-pb node changed by re-encoding");
        if let Some(payload) = node.data {
            unixfs_stable(payload);
        }
    }
    unixfs_stable(data);

    // The same bytes as a verified block: raw leaf and dag-pb node, CIDv0 and CIDv1.
    for (version, codec) in [
        (Version::V1, RAW),
        (Version::V0, DAG_PB),
        (Version::V1, DAG_PB),
    ] {
        let cid = cid_of(version, codec, data);
        let _ = declared_size(&cid, data);
        if let Ok((range, children)) = interpret(&cid, data) {
            if let Some(r) = &range {
                assert!(r.end <= data.len(), "range {r:?} of {} bytes", data.len());
            }
            for child in &children {
                assert!(check_supported(child).is_ok(), "unsupported child {child}");
            }
        }
        let max = u64::from(data.first().copied().unwrap_or(0)) * 64;
        let mut verifier = DagVerifier::new(cid, max);
        if let Ok(emits) = verifier.accept(&cid, data) {
            let mut total = 0u64;
            for emit in emits {
                match emit {
                    Emit::Data(r) => {
                        assert!(r.start < r.end && r.end <= data.len(), "{r:?}");
                        total += r.len() as u64;
                    }
                    Emit::Copy { .. } => panic!("a copy before anything was written"),
                }
            }
            assert_eq!(total, verifier.written());
            assert!(total <= max, "{total} bytes written over the cap of {max}");
            let _ = verifier.finish();
        }
    }
});

/// Decodes `bytes` as UnixFS Data and, for a file node, checks that it survives re-encoding.
fn unixfs_stable(bytes: &[u8]) {
    let Ok(d) = unixfs::decode(bytes) else {
        return;
    };
    if let Some(inner) = d.data {
        assert!(within(inner, bytes), "UnixFS Data outside its message");
    }
    let _ = unixfs::kind_name(d.kind);
    if d.kind != unixfs::FILE {
        return;
    }
    let filesize = d.filesize.unwrap_or(0);
    let again = unixfs::encode_file(d.data, filesize, &d.blocksizes);
    let back = unixfs::decode(&again).unwrap_or_else(|e| panic!("re-encoded UnixFS: {e}"));
    assert_eq!(back.kind, unixfs::FILE);
    // The encoder leaves out empty data, as kubo does.
    assert_eq!(back.data, d.data.filter(|x| !x.is_empty()));
    assert_eq!(back.filesize, Some(filesize));
    assert_eq!(back.blocksizes, d.blocksizes);
    // Re-encoding is canonical: a second round gives the same bytes.
    assert_eq!(
        unixfs::encode_file(back.data, filesize, &back.blocksizes),
        again
    );
}

fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}
