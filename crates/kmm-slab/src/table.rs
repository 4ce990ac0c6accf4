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

/// A two-level array of `dir * chunk` entries of `T`.
pub(crate) struct Table<T> {
    dir: Box<[Once<Box<[T]>>]>,
    chunk: usize,
}

impl<T: Default> Table<T> {
    /// A table of up to `dir * chunk` entries; nothing is allocated but the directory.
    pub(crate) fn new(dir: usize, chunk: usize) -> Table<T> {
        Table {
            dir: (0..dir).map(|_| Once::new()).collect(),
            chunk,
        }
    }

    /// The number of entries the table can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.dir.len() * self.chunk
    }

    /// Entry `id`, if its chunk exists.
    #[inline]
    pub(crate) fn get(&self, id: usize) -> Option<&T> {
        let chunk = self.dir.get(id / self.chunk)?.get()?;
        chunk.get(id % self.chunk)
    }

    /// Entry `id`, allocating its chunk if needed; `None` beyond the capacity.
    pub(crate) fn get_or_alloc(&self, id: usize) -> Option<&T> {
        let slot = self.dir.get(id / self.chunk)?;
        let chunk = slot.call_once(|| {
            (0..self.chunk)
                .map(|_| T::default())
                .collect::<Vec<T>>()
                .into_boxed_slice()
        });
        chunk.get(id % self.chunk)
    }

    /// Every allocated entry with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.dir.iter().enumerate().flat_map(move |(d, slot)| {
            slot.get().into_iter().flat_map(move |c| {
                c.iter()
                    .enumerate()
                    .map(move |(i, t)| (d * self.chunk + i, t))
            })
        })
    }
}

impl<T> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field(
                "chunks",
                &self.dir.iter().filter(|c| c.get().is_some()).count(),
            )
            .field("chunk", &self.chunk)
            .finish()
    }
}
