//! UnixFS `Data` messages inside dag-pb nodes: decoding to find a file's bytes, encoding
//! for CID computation. Pure.
//!
//! Field order is the one kubo (go-unixfs) writes: Type (1), Data (2), filesize (3), then
//! one blocksizes (4) entry per child, unpacked.

use crate::pb::{put_bytes, put_uint, PbError, Reader, LEN, VARINT};

pub const RAW: u64 = 0;
pub const DIRECTORY: u64 = 1;
pub const FILE: u64 = 2;
pub const METADATA: u64 = 3;
pub const SYMLINK: u64 = 4;
pub const HAMT_SHARD: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Data<'a> {
    pub kind: u64,
    pub data: Option<&'a [u8]>,
    pub filesize: Option<u64>,
    pub blocksizes: Vec<u64>,
}

impl Data<'_> {
    /// True for the node types that hold file bytes.
    pub fn is_file(&self) -> bool {
        self.kind == FILE || self.kind == RAW
    }
}

pub fn kind_name(kind: u64) -> String {
    match kind {
        RAW => "raw".into(),
        DIRECTORY => "directory".into(),
        FILE => "file".into(),
        METADATA => "metadata".into(),
        SYMLINK => "symlink".into(),
        HAMT_SHARD => "HAMT shard (sharded directory)".into(),
        other => format!("unknown type {other}"),
    }
}

pub fn decode(bytes: &[u8]) -> Result<Data<'_>, PbError> {
    let mut r = Reader::new(bytes);
    let mut out = Data::default();
    let mut has_type = false;
    while let Some((number, wire)) = r.field()? {
        match (number, wire) {
            (1, VARINT) => {
                out.kind = r.varint()?;
                has_type = true;
            }
            (2, LEN) => out.data = Some(r.bytes()?),
            (3, VARINT) => out.filesize = Some(r.varint()?),
            (4, VARINT) => out.blocksizes.push(r.varint()?),
            (4, LEN) => {
                // A packed encoding of blocksizes, which some writers use.
                let mut packed = Reader::new(r.bytes()?);
                while !packed.is_empty() {
                    out.blocksizes.push(packed.varint()?);
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    if !has_type {
        return Err(PbError("UnixFS Data without a Type".into()));
    }
    Ok(out)
}

/// A file node: a leaf (`data`, no `blocksizes`) or an inner node (`blocksizes`, no data).
pub fn encode_file(data: Option<&[u8]>, filesize: u64, blocksizes: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    put_uint(&mut out, 1, FILE);
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        put_bytes(&mut out, 2, d);
    }
    put_uint(&mut out, 3, filesize);
    for size in blocksizes {
        put_uint(&mut out, 4, *size);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_kubos_empty_node() {
        // The Data of QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH.
        assert_eq!(encode_file(Some(b""), 0, &[]), [0x08, 0x02, 0x18, 0x00]);
    }

    #[test]
    fn round_trip_and_packed_blocksizes() {
        let bytes = encode_file(None, 300, &[100, 200]);
        let d = decode(&bytes).unwrap();
        assert_eq!(
            (d.kind, d.filesize, d.blocksizes.clone()),
            (FILE, Some(300), vec![100, 200])
        );
        assert!(d.is_file());
        let packed = [0x08, 0x02, 0x22, 0x02, 0x05, 0x06];
        assert_eq!(decode(&packed).unwrap().blocksizes, vec![5, 6]);
        assert!(decode(&[0x18, 0x00]).is_err(), "no type");
        assert_eq!(kind_name(DIRECTORY), "directory");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
