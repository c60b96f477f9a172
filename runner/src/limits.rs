//! The bounds of one run, and the resource limiter that holds the instance to them.
//!
//! wasmi's own `StoreLimits` caps each linear memory and each table separately, so a module
//! with eight memories (multi-memory) may take eight times the cap. [`InstanceLimiter`]
//! caps the sum instead: all linear memories of the instance together stay within
//! `max_memory` bytes, all tables together within `max_table_elements` elements, at
//! instantiation (a module whose initial memories or tables exceed a cap is refused) and
//! at every `memory.grow` / `table.grow` (which then returns -1 to the guest, as the
//! specification allows).

use std::time::Duration;

use wasmi::ResourceLimiter;
use wasmi_core::LimiterError;

/// Default of `--max-memory`: bytes of linear memory, all memories together.
pub const DEFAULT_MAX_MEMORY: usize = 256 << 20;
/// Default of `--max-table-elements`: elements of all tables together. A funcref element
/// takes a few bytes in wasmi, so this bounds tables to some tens of MiB.
pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 10_000_000;
/// Instances, memories and tables a store may create. The runner instantiates one module;
/// the counts only bound bookkeeping, the caps above bound the bytes.
const MAX_INSTANCES: usize = 1;
const MAX_MEMORIES: usize = 100;
const MAX_TABLES: usize = 100;

/// Resource bounds of one run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Fuel budget; `None` turns metering off (faster, but only the timeout bounds the run).
    pub fuel: Option<u64>,
    /// Bytes of linear memory, all memories together.
    pub max_memory: usize,
    /// Elements of all tables together.
    pub max_table_elements: usize,
    /// Wall-clock bound of instantiation plus the call; `None` waits forever.
    pub timeout: Option<Duration>,
}

/// What [`InstanceLimiter`] refused last, for the error message when instantiation fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Memory { requested: usize, cap: usize },
    Table { requested: usize, cap: usize },
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::Memory { requested, cap } => write!(
                f,
                "its linear memories would need {} in all, over the cap of {} (--max-memory / MAX_MEMORY)",
                bytes(*requested),
                bytes(*cap)
            ),
            Denial::Table { requested, cap } => write!(
                f,
                "its tables would need {requested} elements in all, over the cap of {cap} (--max-table-elements / MAX_TABLE_ELEMENTS)"
            ),
        }
    }
}

/// `268435456 bytes (256 MiB)`.
fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{n} bytes ({} MiB)", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// Caps the sum over all linear memories and over all tables of the instance.
///
/// wasmi asks before every creation or growth (`current` → `desired`), and reports a
/// growth it allowed that then failed (out of fuel, out of host memory) through
/// `*_grow_failed`; the totals here follow both, so they always equal what exists.
#[derive(Debug)]
pub struct InstanceLimiter {
    max_memory: usize,
    max_table_elements: usize,
    memory: usize,
    table_elements: usize,
    /// The last growth allowed, taken back if it fails after all.
    pending_memory: usize,
    pending_table: usize,
    denied: Option<Denial>,
}

impl InstanceLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_memory: limits.max_memory,
            max_table_elements: limits.max_table_elements,
            memory: 0,
            table_elements: 0,
            pending_memory: 0,
            pending_table: 0,
            denied: None,
        }
    }

    /// Bytes of linear memory the instance holds now, all memories together.
    pub fn memory_bytes(&self) -> usize {
        self.memory
    }

    /// Table elements the instance holds now, all tables together.
    pub fn table_elements(&self) -> usize {
        self.table_elements
    }

    /// The last request refused, if any.
    pub fn denied(&self) -> Option<&Denial> {
        self.denied.as_ref()
    }

    /// Admits a growth of one of the totals from `current` to `desired`, or refuses it.
    fn admit(
        total: &mut usize,
        pending: &mut usize,
        cap: usize,
        current: usize,
        desired: usize,
    ) -> Result<(), usize> {
        let delta = desired.saturating_sub(current);
        match total.checked_add(delta) {
            Some(t) if t <= cap => {
                *total = t;
                *pending = delta;
                Ok(())
            }
            other => Err(other.unwrap_or(usize::MAX)),
        }
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let admitted = Self::admit(
            &mut self.memory,
            &mut self.pending_memory,
            self.max_memory,
            current,
            desired,
        );
        Ok(match admitted {
            Ok(()) => true,
            Err(requested) => {
                self.denied = Some(Denial::Memory {
                    requested,
                    cap: self.max_memory,
                });
                false
            }
        })
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let admitted = Self::admit(
            &mut self.table_elements,
            &mut self.pending_table,
            self.max_table_elements,
            current,
            desired,
        );
        Ok(match admitted {
            Ok(()) => true,
            Err(requested) => {
                self.denied = Some(Denial::Table {
                    requested,
                    cap: self.max_table_elements,
                });
                false
            }
        })
    }

    fn memory_grow_failed(
        &mut self,
        _error: &wasmi::errors::MemoryError,
    ) -> Result<(), LimiterError> {
        self.memory = self
            .memory
            .saturating_sub(std::mem::take(&mut self.pending_memory));
        Ok(())
    }

    fn table_grow_failed(
        &mut self,
        _error: &wasmi::errors::TableError,
    ) -> Result<(), LimiterError> {
        self.table_elements = self
            .table_elements
            .saturating_sub(std::mem::take(&mut self.pending_table));
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limiter(max_memory: usize, max_table_elements: usize) -> InstanceLimiter {
        InstanceLimiter::new(&Limits {
            fuel: None,
            max_memory,
            max_table_elements,
            timeout: None,
        })
    }

    #[test]
    fn memories_are_capped_together_not_each() {
        let mut l = limiter(100, 10);
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(
            !l.memory_growing(0, 60, None).unwrap(),
            "a second memory of 60 makes 120"
        );
        assert_eq!(
            l.denied(),
            Some(&Denial::Memory {
                requested: 120,
                cap: 100
            })
        );
        assert!(l.memory_growing(0, 40, None).unwrap());
        assert_eq!(l.memory_bytes(), 100);
    }

    #[test]
    fn a_failed_growth_gives_its_share_back() {
        let mut l = limiter(100, 10);
        assert!(l.memory_growing(0, 50, None).unwrap());
        assert!(l.memory_growing(50, 90, None).unwrap());
        l.memory_grow_failed(&wasmi::errors::MemoryError::OutOfSystemMemory)
            .unwrap();
        assert_eq!(l.memory_bytes(), 50);
        assert!(l.table_growing(0, 10, None).unwrap());
        l.table_grow_failed(&wasmi::errors::TableError::GrowOutOfBounds)
            .unwrap();
        assert_eq!(l.table_elements(), 0);
    }

    proptest! {
        /// Whatever sequence of creations and growths, across any number of memories and
        /// tables, the admitted totals never exceed the caps, and every request that fits
        /// is admitted.
        #[test]
        fn totals_never_exceed_the_caps(
            cap in 0usize..1_000_000,
            requests in proptest::collection::vec((any::<bool>(), 0usize..400_000, any::<bool>()), 0..64),
        ) {
            let mut l = limiter(cap, cap);
            // The current size of each resource created so far: (is_memory, size).
            let mut sizes: Vec<(bool, usize)> = Vec::new();
            for (memory, amount, grow_existing) in requests {
                let index = sizes.iter().rposition(|(m, _)| *m == memory).filter(|_| grow_existing);
                let current = index.map_or(0, |i| sizes[i].1);
                let desired = current + amount;
                let total: usize = sizes.iter().filter(|(m, _)| *m == memory).map(|(_, s)| s).sum();
                let ok = if memory {
                    l.memory_growing(current, desired, None).unwrap()
                } else {
                    l.table_growing(current, desired, None).unwrap()
                };
                prop_assert_eq!(ok, total + amount <= cap);
                if ok {
                    match index {
                        Some(i) => sizes[i].1 = desired,
                        None => sizes.push((memory, desired)),
                    }
                }
                let mem: usize = sizes.iter().filter(|(m, _)| *m).map(|(_, s)| s).sum();
                let tab: usize = sizes.iter().filter(|(m, _)| !*m).map(|(_, s)| s).sum();
                prop_assert_eq!(l.memory_bytes(), mem);
                prop_assert_eq!(l.table_elements(), tab);
                prop_assert!(mem <= cap && tab <= cap);
            }
        }
    }
}
