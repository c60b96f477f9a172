//! CID parsing: `fetcher::cid::parse_cid` on text and `Cid::try_from` / `read_cid` +
//! `check_supported` on binary CIDs, the two ways a CID reaches us from outside (a task's
//! `wasm_cid`/`input_cid`, and the links and frames inside blocks a gateway sent).
//!
//! Checks, besides "no panic": a CID that `parse_cid` accepts is one the fetcher can verify
//! (`check_supported` holds: dag-pb or raw, sha2-256, 32-byte digest), and its canonical
//! forms round-trip: its string parses back to it, its bytes read back to it using exactly
//! `encoded_len` bytes. A binary CID that `read_cid` accepts is the one `Cid::try_from`
//! gives, took at least its canonical length and no more than it was given, and, when
//! supported, was in its canonical bytes (a finding: `regressions/cid`, now refused by `read_cid`).
#![no_main]

use cid::Cid;
use fetcher::cid::{check_supported, parse_cid, read_cid, DAG_PB, RAW, SHA2_256};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cid) = parse_cid(text) {
            supported_and_canonical(&cid);
        }
    }
    // The same bytes as text even when not UTF-8, as a lossy reader would pass them on.
    let _ = parse_cid(&String::from_utf8_lossy(data));

    match read_cid(data, "fuzz") {
        Ok((cid, used)) => {
            assert!(used <= data.len(), "used {used} of {} bytes", data.len());
            assert_eq!(Cid::try_from(data).ok(), Some(cid));
            // The canonical form is the shortest.
            assert!(used >= cid.encoded_len(), "{cid} from {used} bytes");
            if check_supported(&cid).is_ok() {
                assert_eq!(
                    cid.to_bytes(),
                    data[..used],
                    "{cid}: not its canonical bytes"
                );
                supported_and_canonical(&cid);
            }
        }
        // Refused: not a CID at all, or not in its canonical bytes (which the cid crate
        // alone would take).
        Err(_) => {
            if let Ok(cid) = Cid::try_from(data) {
                assert!(!data.starts_with(&cid.to_bytes()), "{cid}: canonical, yet refused");
            }
        }
    }
});

fn supported_and_canonical(cid: &Cid) {
    check_supported(cid).unwrap_or_else(|e| panic!("{cid} parsed but is unsupported: {e}"));
    assert!(matches!(cid.codec(), DAG_PB | RAW), "{cid}");
    assert_eq!(cid.hash().code(), SHA2_256, "{cid}");
    assert_eq!(cid.hash().digest().len(), 32, "{cid}");
    let text = cid.to_string();
    assert_eq!(parse_cid(&text).ok(), Some(*cid), "{text}");
    let bytes = cid.to_bytes();
    let (back, used) = read_cid(&bytes, "round trip").unwrap_or_else(|e| panic!("{cid}: {e}"));
    assert_eq!((back, used), (*cid, bytes.len()), "{cid}");
}
