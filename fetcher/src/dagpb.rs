//! dag-pb nodes (`PBNode { Links, Data }`): decoding for verification, encoding for CID
//! computation. Pure.
//!
//! Encoding follows the dag-pb spec's canonical form, which is what kubo writes: the links
//! (field 2) first, each as Hash (1), Name (2), Tsize (3), then the data (field 1).

use cid::Cid;

use crate::cid::read_cid;
use crate::pb::{put_bytes, put_key, put_uint, put_varint, PbError, Reader, LEN};

/// One link of a node. Names are kept as bytes: UnixFS files do not use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub cid: Cid,
    pub name: Option<Vec<u8>>,
    pub tsize: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node<'a> {
    pub links: Vec<Link>,
    pub data: Option<&'a [u8]>,
}

pub fn decode(bytes: &[u8]) -> Result<Node<'_>, PbError> {
    let mut r = Reader::new(bytes);
    let mut node = Node::default();
    while let Some((number, wire)) = r.field()? {
        match (number, wire) {
            (1, LEN) => node.data = Some(r.bytes()?),
            (2, LEN) => node.links.push(decode_link(r.bytes()?)?),
            (1 | 2, _) => return Err(PbError(format!("field {number} has wire type {wire}"))),
            _ => return Err(PbError(format!("unknown field {number} in a PBNode"))),
        }
    }
    Ok(node)
}

fn decode_link(bytes: &[u8]) -> Result<Link, PbError> {
    let mut r = Reader::new(bytes);
    let (mut cid, mut name, mut tsize) = (None, None, None);
    while let Some((number, wire)) = r.field()? {
        match (number, wire) {
            (1, LEN) => {
                let raw = r.bytes()?;
                let (c, used) = read_cid(raw, "link").map_err(|e| PbError(e.to_string()))?;
                if used != raw.len() {
                    return Err(PbError("trailing bytes after a link's CID".into()));
                }
                cid = Some(c);
            }
            (2, LEN) => name = Some(r.bytes()?.to_vec()),
            (3, 0) => tsize = Some(r.varint()?),
            _ => {
                return Err(PbError(format!(
                    "unexpected field {number} (wire type {wire}) in a PBLink"
                )))
            }
        }
    }
    let cid = cid.ok_or_else(|| PbError("a PBLink without a Hash".into()))?;
    Ok(Link { cid, name, tsize })
}

pub fn encode(node: &Node<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for link in &node.links {
        let mut l = Vec::new();
        put_bytes(&mut l, 1, &link.cid.to_bytes());
        if let Some(name) = &link.name {
            put_bytes(&mut l, 2, name);
        }
        if let Some(tsize) = link.tsize {
            put_uint(&mut l, 3, tsize);
        }
        put_key(&mut out, 2, LEN);
        put_varint(&mut out, l.len() as u64);
        out.extend_from_slice(&l);
    }
    if let Some(data) = node.data {
        put_bytes(&mut out, 1, data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{cid_of, RAW};

    #[test]
    fn round_trip() {
        let child = cid_of(cid::Version::V1, RAW, b"x");
        let node = Node {
            links: vec![Link {
                cid: child,
                name: Some(Vec::new()),
                tsize: Some(1),
            }],
            data: Some(b"\x08\x02"),
        };
        let bytes = encode(&node);
        assert_eq!(decode(&bytes).unwrap(), node);
    }

    #[test]
    fn rejects_unknown_fields_and_linkless_hashes() {
        assert!(decode(&[0x18, 0x01]).is_err());
        assert!(decode(&[0x12, 0x00]).is_err());
        assert!(decode(&[0x12, 0x05, 0x0a]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_nodes_never_panic(flip in 0usize..64, byte in proptest::num::u8::ANY) {
            let child = cid_of(cid::Version::V0, crate::cid::DAG_PB, b"y");
            let node = Node { links: vec![Link { cid: child, name: Some(vec![]), tsize: Some(9) }], data: Some(b"\x08\x02\x18\x01") };
            let mut bytes = encode(&node);
            let i = flip % bytes.len();
            bytes[i] = byte;
            let _ = decode(&bytes);
        }
    }
}
