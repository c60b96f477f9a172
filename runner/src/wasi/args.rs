//! `args_*` and `environ_*`: NUL-terminated strings packed into one guest
//! buffer, plus an array of pointers into it.

use super::errno::{Errno, EFAULT};
use super::memory::GuestMemory;

/// A list of NUL-terminated strings with its sizes precomputed, so that the
/// `*_sizes_get` answer and the layout `*_get` writes can never disagree.
#[derive(Debug)]
pub(crate) struct StringList {
    items: Vec<Vec<u8>>,
    count: u32,
    buf_size: u32,
}

impl StringList {
    /// `items` must not contain NUL bytes (checked by the caller, which can
    /// name the offending value). `None` if the sizes do not fit in a u32.
    pub(crate) fn new(items: impl IntoIterator<Item = Vec<u8>>) -> Option<Self> {
        let mut buf_size: u32 = 0;
        let items: Vec<Vec<u8>> = items
            .into_iter()
            .map(|mut item| {
                item.push(0);
                item
            })
            .collect();
        for item in &items {
            buf_size = buf_size.checked_add(u32::try_from(item.len()).ok()?)?;
        }
        let count = u32::try_from(items.len()).ok()?;
        // The pointer array must fit in a 32-bit memory as well.
        count.checked_mul(4)?;
        Some(Self {
            items,
            count,
            buf_size,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn sizes_get(
        &self,
        mem: &mut GuestMemory<'_>,
        count_ptr: u32,
        buf_size_ptr: u32,
    ) -> Result<(), Errno> {
        mem.check(count_ptr, 4)?;
        mem.check(buf_size_ptr, 4)?;
        mem.write_u32(count_ptr, self.count)?;
        mem.write_u32(buf_size_ptr, self.buf_size)
    }

    pub(crate) fn get(&self, mem: &mut GuestMemory<'_>, ptrs: u32, buf: u32) -> Result<(), Errno> {
        mem.check(ptrs, self.count.checked_mul(4).ok_or(EFAULT)?)?;
        mem.check(buf, self.buf_size)?;
        // Cursors are u64: after the last item they may legitimately point
        // one past the end of a full 4 GiB memory.
        let mut ptr_at = u64::from(ptrs);
        let mut str_at = u64::from(buf);
        for item in &self.items {
            let ptr32 = u32::try_from(ptr_at).map_err(|_| EFAULT)?;
            let str32 = u32::try_from(str_at).map_err(|_| EFAULT)?;
            mem.write_u32(ptr32, str32)?;
            mem.write_bytes(str32, item)?;
            ptr_at = ptr_at.saturating_add(4);
            str_at = str_at.saturating_add(u64::try_from(item.len()).map_err(|_| EFAULT)?);
        }
        Ok(())
    }
}
