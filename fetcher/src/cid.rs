//! CIDs: parsing with the supported subset checked, and block verification.
//!
//! Pure. Supported: CIDv0 and CIDv1 (any multibase the `cid` crate decodes, base32 and
//! base58btc among them), codecs dag-pb and raw, hash sha2-256 with a 32-byte digest.
//! Anything else is rejected by name: an unknown hash is an error, never a pass.

use cid::{Cid, Version};
use multihash::Multihash;
use sha2::{Digest, Sha256};

use crate::error::{FetchError, Result};

pub const DAG_PB: u64 = 0x70;
pub const RAW: u64 = 0x55;
pub const SHA2_256: u64 = 0x12;

/// Parses a CID string and checks that this fetcher can verify it. Only a bare CID: the
/// `cid` crate would also take `anything/ipfs/<cid>` and parse what follows the first
/// `/ipfs/`, so that other text (control characters included) could pass for a CID; every
/// multibase this accepts (base58btc, base32) is ASCII letters and digits.
pub fn parse_cid(input: &str) -> Result<Cid> {
    let trimmed = input.trim();
    if let Some(bad) = trimmed.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(FetchError::InvalidCid {
            input: input.to_owned(),
            reason: format!(
                "it holds {bad:?}; a CID is letters and digits only (give the CID itself, not an /ipfs/ path)"
            ),
        });
    }
    let cid = Cid::try_from(trimmed).map_err(|e| FetchError::InvalidCid {
        input: input.to_owned(),
        reason: e.to_string(),
    })?;
    check_supported(&cid)?;
    Ok(cid)
}

/// Rejects codecs and hashes that cannot be verified here, naming them.
pub fn check_supported(cid: &Cid) -> Result<()> {
    let unsupported = |what: String| FetchError::Unsupported {
        cid: cid.to_string(),
        what,
    };
    match cid.codec() {
        DAG_PB | RAW => {}
        other => {
            return Err(unsupported(format!(
                "codec {} (0x{other:x})",
                codec_name(other)
            )))
        }
    }
    let mh = cid.hash();
    if mh.code() != SHA2_256 {
        return Err(unsupported(format!(
            "hash function {} (0x{:x})",
            hash_name(mh.code()),
            mh.code()
        )));
    }
    if mh.size() != 32 {
        return Err(unsupported(format!(
            "sha2-256 digest length {} (must be 32)",
            mh.size()
        )));
    }
    Ok(())
}

/// Checks `data` against `cid`'s digest; a mismatch reports both digests.
pub fn verify_block(cid: &Cid, data: &[u8]) -> Result<()> {
    check_supported(cid)?;
    let actual = Sha256::digest(data);
    if actual.as_slice() == cid.hash().digest() {
        Ok(())
    } else {
        Err(FetchError::HashMismatch {
            cid: cid.to_string(),
            expected: hex(cid.hash().digest()),
            actual: hex(&actual),
        })
    }
}

/// The CID of `data` as a block of `codec`, in CID `version`.
pub fn cid_of(version: Version, codec: u64, data: &[u8]) -> Cid {
    cid_from_digest(version, codec, Sha256::digest(data).into())
}

pub fn cid_from_digest(version: Version, codec: u64, digest: [u8; 32]) -> Cid {
    // A 32-byte digest always fits Multihash<64>, and CIDv0 is only asked for dag-pb.
    let mh = Multihash::<64>::wrap(SHA2_256, &digest).unwrap_or_default();
    match version {
        Version::V0 => Cid::new_v0(mh).unwrap_or_else(|_| Cid::new_v1(codec, mh)),
        Version::V1 => Cid::new_v1(codec, mh),
    }
}

/// Reads one binary CID from the front of `bytes`; returns it and the bytes it used.
pub fn read_cid(bytes: &[u8], context: &str) -> Result<(Cid, usize)> {
    let mut cursor = std::io::Cursor::new(bytes);
    let cid = Cid::read_bytes(&mut cursor).map_err(|e| FetchError::Malformed {
        cid: context.to_owned(),
        what: "CID bytes",
        detail: e.to_string(),
    })?;
    let used = usize::try_from(cursor.position()).unwrap_or(bytes.len());
    // One CID, one encoding: a varint padded past its shortest form (which the varint
    // reader tolerates) would let two byte strings name the same CID.
    if used != cid.encoded_len() {
        return Err(FetchError::Malformed {
            cid: context.to_owned(),
            what: "CID bytes",
            detail: format!(
                "{used} bytes encode {cid}, whose canonical encoding is {} bytes",
                cid.encoded_len()
            ),
        });
    }
    Ok((cid, used))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn codec_name(code: u64) -> &'static str {
    match code {
        0x71 => "dag-cbor",
        0x0129 => "dag-json",
        0x78 => "git-raw",
        0x0200 => "json",
        0x51 => "cbor",
        _ => "unknown",
    }
}

fn hash_name(code: u64) -> &'static str {
    match code {
        0x13 => "sha2-512",
        0x1e => "blake3",
        0xb220 => "blake2b-256",
        0x16 => "sha3-256",
        0x00 => "identity",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v0_and_v1_in_base32_and_base58btc() {
        let v0 = parse_cid("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH").unwrap();
        assert_eq!(v0.version(), Version::V0);
        let v1 = parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap();
        assert_eq!(v1.codec(), RAW);
        let b58 = v1
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        assert_eq!(parse_cid(&b58).unwrap(), v1);
    }

    #[test]
    fn rejects_unsupported_codec_and_hash_by_name() {
        let mh = Multihash::<64>::wrap(SHA2_256, &[0; 32]).unwrap();
        let cbor = Cid::new_v1(0x71, mh);
        let err = parse_cid(&cbor.to_string()).unwrap_err().to_string();
        assert!(err.contains("dag-cbor"), "{err}");
        let sha512 = Cid::new_v1(RAW, Multihash::<64>::wrap(0x13, &[0; 64]).unwrap());
        let err = parse_cid(&sha512.to_string()).unwrap_err().to_string();
        assert!(err.contains("sha2-512"), "{err}");
        assert!(parse_cid("not-a-cid").is_err());
        assert!(parse_cid("").is_err());
    }

    #[test]
    fn verify_block_reports_both_digests() {
        let cid = cid_of(Version::V1, RAW, b"hello world\n");
        assert_eq!(
            cid.to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
        verify_block(&cid, b"hello world\n").unwrap();
        let err = verify_block(&cid, b"hello world!").unwrap_err().to_string();
        assert!(err.contains(&hex(cid.hash().digest())), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn cid_decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80), text in ".{0,80}") {
            let _ = read_cid(&bytes, "fuzz");
            let _ = parse_cid(&text);
            let _ = parse_cid(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn only_bare_canonical_cids_are_taken() {
        let v0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
        assert!(parse_cid(v0).is_ok());
        for bad in [
            format!("\u{1b}[2J ERROR forged/ipfs/{v0}"),
            format!("/ipfs/{v0}"),
            format!("{v0}/x"),
        ] {
            let err = parse_cid(&bad).unwrap_err().to_string();
            assert!(err.contains("letters and digits"), "{err}");
        }
        // The raw sha2-256 CID of "hello world", its hash-code varint padded to ten bytes
        // (the varint reader keeps only the lowest bit of the tenth).
        let canonical =
            Cid::try_from("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e").unwrap();
        let bytes = canonical.to_bytes();
        assert_eq!(read_cid(&bytes, "t").unwrap().1, bytes.len());
        assert_eq!(&bytes[..4], &[0x01, 0x55, 0x12, 0x20]);
        let mut padded = vec![
            0x01, 0x55, 0x92, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
        ];
        padded.extend_from_slice(&bytes[3..]);
        let err = read_cid(&padded, "t").unwrap_err().to_string();
        assert!(err.contains("canonical"), "{err}");
    }
}
