//! Bounds-checked access to the guest's linear memory.
//!
//! Every pointer and length a guest passes is untrusted: all range arithmetic
//! here is checked and any range that is not fully inside the memory yields
//! EFAULT instead of a panic. Values are little-endian, as in Wasm itself, and
//! no alignment is required (Wasm memory has none).

use super::errno::{Errno, EFAULT};
use std::ops::Range;

/// The guest's linear memory for the duration of one host call.
pub struct GuestMemory<'a> {
    data: &'a mut [u8],
}

impl<'a> GuestMemory<'a> {
    pub fn new(data: &'a mut [u8]) -> Self {
        Self { data }
    }

    /// The host range `[ptr, ptr + len)`, or EFAULT if any of it is outside.
    pub fn range(&self, ptr: u32, len: u32) -> Result<Range<usize>, Errno> {
        let start = usize::try_from(ptr).map_err(|_| EFAULT)?;
        let len = usize::try_from(len).map_err(|_| EFAULT)?;
        let end = start.checked_add(len).ok_or(EFAULT)?;
        if end > self.data.len() {
            return Err(EFAULT);
        }
        Ok(start..end)
    }

    /// Validates an output location before a call has side effects, so that a
    /// bad result pointer cannot e.g. leak a freshly opened file descriptor.
    pub fn check(&self, ptr: u32, len: u32) -> Result<(), Errno> {
        self.range(ptr, len).map(|_| ())
    }

    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        let range = self.range(ptr, len)?;
        self.data.get(range).ok_or(EFAULT)
    }

    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let range = self.range(ptr, len)?;
        self.data.get_mut(range).ok_or(EFAULT)
    }

    fn array<const N: usize>(&self, ptr: u32) -> Result<[u8; N], Errno> {
        let len = u32::try_from(N).map_err(|_| EFAULT)?;
        <[u8; N]>::try_from(self.slice(ptr, len)?).map_err(|_| EFAULT)
    }

    pub fn read_u16(&self, ptr: u32) -> Result<u16, Errno> {
        self.array(ptr).map(u16::from_le_bytes)
    }

    pub fn read_u32(&self, ptr: u32) -> Result<u32, Errno> {
        self.array(ptr).map(u32::from_le_bytes)
    }

    pub fn read_u64(&self, ptr: u32) -> Result<u64, Errno> {
        self.array(ptr).map(u64::from_le_bytes)
    }

    pub fn read_u8(&self, ptr: u32) -> Result<u8, Errno> {
        self.array::<1>(ptr).map(|[b]| b)
    }

    pub fn write_bytes(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
        let len = u32::try_from(bytes.len()).map_err(|_| EFAULT)?;
        self.slice_mut(ptr, len)?.copy_from_slice(bytes);
        Ok(())
    }

    pub fn write_u8(&mut self, ptr: u32, value: u8) -> Result<(), Errno> {
        self.write_bytes(ptr, &[value])
    }

    pub fn write_u16(&mut self, ptr: u32, value: u16) -> Result<(), Errno> {
        self.write_bytes(ptr, &value.to_le_bytes())
    }

    pub fn write_u32(&mut self, ptr: u32, value: u32) -> Result<(), Errno> {
        self.write_bytes(ptr, &value.to_le_bytes())
    }

    pub fn write_u64(&mut self, ptr: u32, value: u64) -> Result<(), Errno> {
        self.write_bytes(ptr, &value.to_le_bytes())
    }
}

/// `ptr + offset` for a field inside a guest struct; overflow is EFAULT.
pub fn offset(ptr: u32, offset: u32) -> Result<u32, Errno> {
    ptr.checked_add(offset).ok_or(EFAULT)
}

/// The largest iovec array accepted in one call (POSIX `IOV_MAX`); it bounds
/// the work a single call does, not memory (iovecs are never collected).
pub const MAX_IOVS: u32 = 1024;

/// Size of a preview1 `iovec`/`ciovec`: `buf: u32`, `buf_len: u32`.
const IOVEC_SIZE: u32 = 8;

/// Reads iovec number `index` of the array at `iovs` as `(buf, buf_len)`.
pub fn iovec(mem: &GuestMemory<'_>, iovs: u32, index: u32) -> Result<(u32, u32), Errno> {
    let at = index
        .checked_mul(IOVEC_SIZE)
        .and_then(|o| iovs.checked_add(o))
        .ok_or(EFAULT)?;
    Ok((mem.read_u32(at)?, mem.read_u32(offset(at, 4)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_is_efault_not_panic() {
        let mut backing = vec![0u8; 16];
        let mut mem = GuestMemory::new(&mut backing);
        assert_eq!(mem.read_u32(13), Err(EFAULT));
        assert_eq!(mem.read_u32(12), Ok(0));
        assert_eq!(mem.slice(u32::MAX, 2).err(), Some(EFAULT));
        assert_eq!(mem.write_u64(9, 1), Err(EFAULT));
        assert_eq!(mem.slice(16, 0).map(<[u8]>::len), Ok(0));
        assert_eq!(iovec(&mem, u32::MAX - 4, 0), Err(EFAULT));
        assert_eq!(iovec(&mem, 0, u32::MAX), Err(EFAULT));
    }
}
