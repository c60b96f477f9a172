//! The protobuf wire format, the little of it that dag-pb and UnixFS use.
//!
//! Written by hand: two tiny schemas do not justify a code generator, and a hand-written
//! reader can check every length from the wire against what is left before using it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbError(pub String);

impl fmt::Display for PbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub const VARINT: u8 = 0;
pub const LEN: u8 = 2;

/// A reader over one message's bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next field's number and wire type, or `None` at the end.
    pub fn field(&mut self) -> Result<Option<(u64, u8)>, PbError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = (key & 7) as u8;
        let number = key >> 3;
        if number == 0 {
            return Err(PbError("field number 0".into()));
        }
        Ok(Some((number, wire)))
    }

    pub fn varint(&mut self) -> Result<u64, PbError> {
        let (v, used) = read_varint(&self.buf[self.pos..])?;
        self.pos += used;
        Ok(v)
    }

    /// A length-delimited value, its length checked against the bytes left.
    pub fn bytes(&mut self) -> Result<&'a [u8], PbError> {
        let len = self.varint()?;
        let left = self.buf.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= left)
            .ok_or_else(|| PbError(format!("length {len} exceeds the {left} bytes left")))?;
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Skips a field of an unknown number.
    pub fn skip(&mut self, wire: u8) -> Result<(), PbError> {
        match wire {
            VARINT => self.varint().map(drop),
            LEN => self.bytes().map(drop),
            1 => self.advance(8),
            5 => self.advance(4),
            other => Err(PbError(format!("unsupported wire type {other}"))),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), PbError> {
        if self.buf.len() - self.pos < n {
            return Err(PbError("truncated fixed-size field".into()));
        }
        self.pos += n;
        Ok(())
    }
}

/// An unsigned LEB128 varint of at most 10 bytes, from the front of `buf`.
pub fn read_varint(buf: &[u8]) -> Result<(u64, usize), PbError> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().take(10).enumerate() {
        let part = u64::from(byte & 0x7f);
        if i == 9 && part > 1 {
            return Err(PbError("varint overflows 64 bits".into()));
        }
        value |= part << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(PbError(if buf.len() < 10 {
        "truncated varint".into()
    } else {
        "varint longer than 10 bytes".into()
    }))
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_key(out: &mut Vec<u8>, number: u64, wire: u8) {
    put_varint(out, (number << 3) | u64::from(wire));
}

pub fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn put_uint(out: &mut Vec<u8>, number: u64, v: u64) {
    put_key(out, number, VARINT);
    put_varint(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(read_varint(&out), Ok((v, out.len())));
        }
        assert!(read_varint(&[0xff; 10]).is_err());
        assert!(read_varint(&[0x80]).is_err());
        assert!(read_varint(&[]).is_err());
        assert!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err()
        );
    }

    #[test]
    fn length_beyond_the_buffer_is_an_error_not_an_allocation() {
        // Field 1, length 2^62: must fail before anything is allocated or sliced.
        let mut msg = Vec::new();
        put_key(&mut msg, 1, LEN);
        put_varint(&mut msg, 1 << 62);
        let mut r = Reader::new(&msg);
        assert_eq!(r.field(), Ok(Some((1, LEN))));
        assert!(r.bytes().is_err());
    }
}
