//! `VmallocChunks`: the chunk source of the facade's per-CPU allocator,
//! taking each chunk from vmalloc as `mm/percpu-vm.c` does.
//!
//! This is the crate's only module with `unsafe` code: on a host MMU a chunk
//! is real memory, handed to the per-CPU allocator with
//! [`ChunkMemory::from_raw`]. Its soundness rests on the private
//! [`VmallocSpace`] of the chunks: the facade builds it over an MMU of its
//! own (a host window nobody else holds) and hands neither out, so the only
//! code that can unmap a chunk's pages is [`VmallocChunks::free_chunk`].

use alloc::sync::Arc;
use core::fmt;

use kmm_gfp::GFP_KERNEL;
use kmm_page::VirtAddr;
use kmm_percpu::{ChunkMemory, ChunkSource, PercpuError};
use kmm_vmalloc::VmallocSpace;

use crate::vm::PERCPU_CHUNK_CALLER;

/// The [`ChunkSource`] of the facade: every chunk is a vmalloc area of a
/// vmalloc space kept for per-CPU chunks (`pcpu_get_vm_areas`,
/// `mm/percpu-vm.c`), real memory on a host MMU and addresses only on a
/// software one.
pub struct VmallocChunks {
    space: Arc<VmallocSpace>,
}

impl fmt::Debug for VmallocChunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmallocChunks")
            .field("start", &self.space.start())
            .field("end", &self.space.end())
            .finish()
    }
}

impl VmallocChunks {
    /// A source over `space`, which nothing else may use.
    pub(crate) fn new(space: Arc<VmallocSpace>) -> VmallocChunks {
        VmallocChunks { space }
    }
}

impl ChunkSource for VmallocChunks {
    fn alloc_chunk(&self, bytes: usize) -> Result<ChunkMemory, PercpuError> {
        let oom = PercpuError::OutOfMemory {
            size: bytes,
            chunk_bytes: bytes,
        };
        let addr = self
            .space
            .vmalloc(bytes, GFP_KERNEL, PERCPU_CHUNK_CALLER)
            .map_err(|_| oom)?;
        let mem = match self.space.as_ptr(addr) {
            // SAFETY: 1. The area `[addr, addr + bytes)` was just vmalloc'ed
            // in this space, whose MMU maps real memory (`as_ptr` answered),
            // so every byte of it is mapped, readable and writable, and the
            // mapping is one contiguous range of the host window. 2. It stays
            // mapped until `free_chunk` vfrees it: the space and its MMU are
            // private to this source (see the module docs), so no other code
            // can unmap or vfree it. 3. The frames behind it were allocated
            // for this area alone; no one else holds a pointer into it.
            Some(ptr) => unsafe { ChunkMemory::from_raw(ptr, bytes) },
            None => ChunkMemory::numbers(addr.0, bytes),
        };
        mem.inspect_err(|_| {
            let _ = self.space.vfree(addr);
        })
    }

    fn free_chunk(&self, mem: ChunkMemory) {
        // The chunk came from `alloc_chunk`, so this cannot fail; there is
        // nobody to tell if it did.
        let _ = self.space.vfree(VirtAddr(mem.addr()));
    }
}
