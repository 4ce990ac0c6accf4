//! `Table<T>`: a grow-only two-level array with stable addresses and lock-free
//! reads, for the slab descriptors (`struct slab`) and the cache registry.
//!
//! Chunks are allocated on first use and never freed while the table lives,
//! so a `&T` handed out stays valid; each entry's fields are atomics guarded
//! by the locks of whoever owns the entry.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use spin::Once;

/// A two-level array of `dir * CHUNK` entries of `T`.
///
/// `CHUNK` is a constant power of two, so that finding an entry is a shift
/// and a mask: `__slab_free` looks up every slab it frees to here, and a
/// run-time chunk size cost it a `div`.
pub(crate) struct Table<T, const CHUNK: usize> {
    dir: Box<[Once<Box<[T]>>]>,
}

impl<T: Default, const CHUNK: usize> Table<T, CHUNK> {
    const POWER_OF_TWO: () = assert!(CHUNK.is_power_of_two());

    /// A table of up to `dir * CHUNK` entries; nothing is allocated but the directory.
    pub(crate) fn new(dir: usize) -> Self {
        let () = Self::POWER_OF_TWO;
        Table {
            dir: (0..dir).map(|_| Once::new()).collect(),
        }
    }

    /// The number of entries the table can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.dir.len() * CHUNK
    }

    /// Entry `id`, if its chunk exists.
    #[inline]
    pub(crate) fn get(&self, id: usize) -> Option<&T> {
        let chunk = self.dir.get(id / CHUNK)?.get()?;
        chunk.get(id % CHUNK)
    }

    /// Entry `id`, allocating its chunk if needed; `None` beyond the capacity.
    pub(crate) fn get_or_alloc(&self, id: usize) -> Option<&T> {
        let slot = self.dir.get(id / CHUNK)?;
        let chunk = slot.call_once(|| {
            (0..CHUNK)
                .map(|_| T::default())
                .collect::<Vec<T>>()
                .into_boxed_slice()
        });
        chunk.get(id % CHUNK)
    }

    /// Every allocated entry with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.dir.iter().enumerate().flat_map(move |(d, slot)| {
            slot.get()
                .into_iter()
                .flat_map(move |c| c.iter().enumerate().map(move |(i, t)| (d * CHUNK + i, t)))
        })
    }
}

impl<T, const CHUNK: usize> fmt::Debug for Table<T, CHUNK> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field(
                "chunks",
                &self.dir.iter().filter(|c| c.get().is_some()).count(),
            )
            .field("chunk", &CHUNK)
            .finish()
    }
}
