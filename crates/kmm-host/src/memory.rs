//! `HostMemory`: "physical" memory backed by a memfd, with lowmem mapped once as the direct map.
//!
//! This module holds all of the crate's `unsafe` code. Its soundness rests on
//! private state that nothing else can change: the direct map is created in
//! [`HostMemory::new`], covers exactly `[0, lowmem_end)` frames, is never
//! remapped, and is unmapped only when the `HostMemory` drops; the memfd is
//! sealed against shrinking, so no mapped byte can lose its backing.

use std::cmp::{max, min};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use kmm_page::{MAX_PAGE_ORDER, PAGE_SIZE, Pfn, PfnRange, PhysMemory};
use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use rustix::mm::{Advice, MapFlags, MprotectFlags, ProtFlags};

use crate::HostError;

/// Physical memory for kmm backed by host memory: a sparse memfd holds every
/// frame at file offset `pfn * PAGE_SIZE`, and the lowmem frames are mapped
/// once, with `MAP_SHARED`, as the direct map (the kernel's linear map, where
/// `page_address` points).
///
/// Frames at or above `lowmem_end` are highmem: [`PhysMemory::direct_map`]
/// answers `None` for them, as for holes between the ranges, so reaching them
/// needs a mapping of their own (`kmap`), which a host `Mmu` makes from
/// [`HostMemory::memfd`]. [`HostMemory::read_frame`] and
/// [`HostMemory::write_frame`] reach any frame through the file without a mapping.
///
/// The memfd is sparse: a machine of many GiB costs only the frames that were
/// touched, and [`PhysMemory::clear_frames`] gives highmem frames back to the
/// host by punching holes. Holes between ranges inside the direct map are
/// mapped `PROT_NONE`, so a stray access to one faults at once.
///
/// The host's page size must divide into frames of [`PAGE_SIZE`] bytes (4 KiB,
/// as on x86-64); on a host with larger pages, a memory map whose lowmem holes
/// are not aligned to them is refused with an `mprotect` error.
pub struct HostMemory {
    // Declared first, so the direct map goes before the file.
    map: DirectMap,
    fd: OwnedFd,
    ranges: Box<[PfnRange]>,
    end: Pfn,
    lowmem_end: Pfn,
}

/// The direct map: `len` bytes at `base`, mapped `MAP_SHARED` from offset 0 of the memfd.
struct DirectMap {
    base: NonNull<u8>,
    len: usize,
}

impl DirectMap {
    /// An empty map, for a machine without lowmem.
    fn empty() -> DirectMap {
        DirectMap {
            base: NonNull::dangling(),
            len: 0,
        }
    }

    /// How the direct map's base is aligned: to the largest buddy block
    /// (`PAGE_SIZE << MAX_PAGE_ORDER`, 4 MiB), as the kernel's direct map is
    /// aligned far beyond it. A block of `2^order` frames then has a virtual
    /// address aligned like its physical one, which kmalloc's promise that
    /// power-of-two sizes are naturally aligned rests on (an 8 KiB kmalloc is
    /// 8 KiB-aligned only if its order-1 slab is).
    const ALIGN: usize = PAGE_SIZE << MAX_PAGE_ORDER;

    /// Maps the first `len` bytes of `fd`, read-write and shared, at a base
    /// aligned to [`DirectMap::ALIGN`]: reserves `len + ALIGN` bytes of
    /// address space, maps the file over the aligned part with `MAP_FIXED`,
    /// and gives back the slack on either side.
    fn new(fd: BorrowedFd<'_>, len: usize) -> Result<DirectMap, HostError> {
        if len == 0 {
            return Ok(DirectMap::empty());
        }
        let span = len.checked_add(Self::ALIGN).ok_or_else(|| HostError::Io {
            op: "mmap",
            source: std::io::Error::other("the direct map does not fit the address space"),
        })?;
        // SAFETY: The address hint is null, so the host picks an unused
        // range: no existing Rust object is replaced or aliased. The range is
        // inaccessible and never backed.
        let reserved = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                span,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(HostError::io("mmap"))?;
        let head = reserved.addr().next_multiple_of(Self::ALIGN) - reserved.addr();
        let aligned = reserved.cast::<u8>().wrapping_add(head);
        // SAFETY: 1. `[aligned, aligned + len)` lies inside the reservation
        // just made (`head < ALIGN` and `head + len <= span`), which holds no
        // Rust object, so `MAP_FIXED` replaces nothing but that reservation.
        // 2. The file is at least `len` bytes long (the caller truncated it
        // so) and sealed against shrinking, so every mapped byte stays backed.
        // 3. The new mapping is private to `DirectMap`; no reference into it
        // exists yet.
        let mapped = unsafe {
            rustix::mm::mmap(
                aligned.cast(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                fd,
                0,
            )
        };
        // The slack on either side goes back. Failing to unmap it would only
        // leak address space, so the results are ignored.
        let tail = span - head - len;
        if head > 0 {
            // SAFETY: `[reserved, aligned)` is the part of the reservation
            // before the direct map: it holds no Rust object and no pointer
            // into it was handed out.
            let _ = unsafe { rustix::mm::munmap(reserved, head) };
        }
        if tail > 0 {
            // SAFETY: the part of the reservation after the direct map, as
            // for the part before it.
            let _ = unsafe { rustix::mm::munmap(aligned.wrapping_add(len).cast(), tail) };
        }
        let ptr = match mapped {
            Ok(ptr) => ptr,
            Err(e) => {
                // SAFETY: as for the slack: the aligned part of the reservation.
                let _ = unsafe { rustix::mm::munmap(aligned.cast(), len) };
                return Err(HostError::io("mmap")(e));
            }
        };
        match NonNull::new(ptr.cast::<u8>()) {
            Some(base) => Ok(DirectMap { base, len }),
            None => Err(HostError::Io {
                op: "mmap",
                source: std::io::Error::other("the host mapped the direct map at address 0"),
            }),
        }
    }

    /// The address of frame `pfn`; the caller checked `pfn` is inside the map.
    fn frame(&self, pfn: Pfn) -> *mut u8 {
        self.base.as_ptr().wrapping_add(pfn.0 * PAGE_SIZE)
    }

    /// Makes frames `[start, end)` of the map inaccessible.
    fn deny(&self, start: Pfn, end: Pfn) -> Result<(), HostError> {
        debug_assert!(start < end && end.0 * PAGE_SIZE <= self.len);
        // SAFETY: 1. `[start, end)` lies inside this mapping (the caller only
        // passes holes below `lowmem_end`), so no other object is affected.
        // 2. Those frames are holes: `direct_map` never hands out their
        // addresses, so no reference into them exists.
        unsafe {
            rustix::mm::mprotect(
                self.frame(start).cast(),
                (end.0 - start.0) * PAGE_SIZE,
                MprotectFlags::empty(),
            )
        }
        .map_err(HostError::io("mprotect"))
    }
}

impl Drop for DirectMap {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: `base..base + len` is exactly the mapping made in
        // `DirectMap::new`, unmapped only here. Its owner, `HostMemory`, is
        // going away, and the `PhysMemory` contract promised the bytes only
        // for as long as it lives, so no user may still hold a pointer into it.
        // A failure cannot be reported from `drop`; it would leave the range mapped, which is safe.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl HostMemory {
    /// Builds physical memory with the frames of `ranges` (any order, empty
    /// ranges ignored, holes allowed); frames from `lowmem_end` up are highmem.
    ///
    /// The memfd is sized to cover the highest frame, and
    /// `[0, min(lowmem_end, highest frame + 1))` is mapped as the direct map
    /// with one `mmap`. Nothing is touched, so this is fast and costs no memory
    /// whatever the size of the machine.
    ///
    /// # Errors
    ///
    /// [`HostError::Overlap`] if two ranges overlap, [`HostError::TooLarge`]
    /// if the highest frame is beyond a file offset or the address space, and
    /// [`HostError::Io`] if the host refuses the memfd or the mapping.
    pub fn new(ranges: &[PfnRange], lowmem_end: Pfn) -> Result<HostMemory, HostError> {
        let mut sorted: Vec<PfnRange> = ranges.iter().copied().filter(|r| !r.is_empty()).collect();
        sorted.sort_by_key(|r| r.start);
        for w in sorted.windows(2) {
            if w[0].end > w[1].start {
                return Err(HostError::Overlap { a: w[0], b: w[1] });
            }
        }
        let end = sorted.last().map_or(Pfn(0), |r| r.end);
        let too_large = HostError::TooLarge { end };
        let file_len = match (end.0 as u64).checked_mul(PAGE_SIZE as u64) {
            Some(len) if i64::try_from(len).is_ok() => len,
            _ => return Err(too_large),
        };
        let lowmem_end = min(lowmem_end, end);
        let Some(map_len) = lowmem_end
            .0
            .checked_mul(PAGE_SIZE)
            .filter(|&l| l <= isize::MAX as usize)
        else {
            return Err(too_large);
        };

        let fd =
            rustix::fs::memfd_create("kmm-phys", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(HostError::io("memfd_create"))?;
        rustix::fs::ftruncate(&fd, file_len).map_err(HostError::io("ftruncate"))?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(HostError::io("fcntl(F_ADD_SEALS)"))?;
        let map = DirectMap::new(fd.as_fd(), map_len)?;
        // Holes below `lowmem_end` are mapped but made inaccessible. The last
        // range ends at `end >= lowmem_end`, so no hole follows it.
        let mut next = Pfn(0);
        for r in &sorted {
            let hole_end = min(r.start, lowmem_end);
            if next < hole_end {
                map.deny(next, hole_end)?;
            }
            next = r.end;
        }
        Ok(HostMemory {
            map,
            fd,
            ranges: sorted.into_boxed_slice(),
            end,
            lowmem_end,
        })
    }

    /// The ranges of frames with memory, sorted, without empty ones.
    pub fn ranges(&self) -> &[PfnRange] {
        &self.ranges
    }

    /// One past the highest frame with memory (`max_pfn`).
    #[doc(alias = "max_pfn")]
    pub fn end_pfn(&self) -> Pfn {
        self.end
    }

    /// The first highmem frame, at most [`HostMemory::end_pfn`]; the direct
    /// map covers the frames below it (`max_low_pfn`).
    #[doc(alias = "max_low_pfn")]
    pub fn lowmem_end(&self) -> Pfn {
        self.lowmem_end
    }

    /// Whether `pfn` has memory behind it (`pfn_valid`).
    #[doc(alias = "pfn_valid")]
    pub fn has_frame(&self, pfn: Pfn) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= pfn);
        self.ranges.get(i).is_some_and(|r| r.contains(pfn))
    }

    /// Whether every frame of `[start, end)` has memory.
    fn covers(&self, start: Pfn, end: Pfn) -> bool {
        let mut next = start;
        let mut i = self.ranges.partition_point(|r| r.end <= next);
        while next < end {
            match self.ranges.get(i) {
                Some(r) if r.start <= next => next = r.end,
                _ => return false,
            }
            i += 1;
        }
        true
    }

    /// The memfd that holds the frames, at offset `pfn * PAGE_SIZE`, for
    /// mapping frames elsewhere (an `Mmu`, `kmap`).
    ///
    /// # Safety
    ///
    /// The file is the memory behind every frame, including the direct map.
    /// The caller must use the descriptor only to reach frames it owns (frames
    /// no reference elsewhere points into for as long as it uses them) and must
    /// not map frames it does not own writable, nor punch or allocate ranges
    /// outside its own frames. The file is sealed against changes of size.
    pub unsafe fn memfd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The host memory the frames occupy right now, in bytes: the memfd's
    /// allocated blocks. Untouched and cleared highmem frames cost nothing.
    ///
    /// # Errors
    ///
    /// [`HostError::Io`] if `fstat` fails.
    pub fn allocated_bytes(&self) -> Result<u64, HostError> {
        let stat = rustix::fs::fstat(&self.fd).map_err(HostError::io("fstat"))?;
        Ok(u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512))
    }

    /// Makes every lowmem frame resident now: allocates its host page and maps
    /// it in the direct map, so that no later access to it faults. The
    /// contents do not change.
    ///
    /// A kernel's RAM is there from boot; a `HostMemory` is sparse, and the
    /// first touch of each frame costs the host a page fault (allocating,
    /// zeroing and mapping a shared page, about as long as several hundred
    /// kmallocs). Timing kmm on a populated machine measures the allocator
    /// rather than the host: `kmm-sim replay` does so. The cost is the host
    /// memory of the whole direct map, for as long as the `HostMemory` lives.
    ///
    /// Uses `madvise(MADV_POPULATE_WRITE)` (Linux 5.14); on older hosts it
    /// falls back to allocating the file's pages with `fallocate`, which
    /// leaves a cheaper fault (mapping an existing page) on each first touch.
    ///
    /// # Errors
    ///
    /// [`HostError::Io`] if the host refuses both, for example when it cannot
    /// spare the memory; frames populated before the failure stay resident.
    pub fn populate(&self) -> Result<(), HostError> {
        for r in self.ranges.iter() {
            let end = min(r.end, self.lowmem_end);
            if r.start >= end {
                continue;
            }
            let len = (end.0 - r.start.0) * PAGE_SIZE;
            let at = self.map.frame(r.start);
            // SAFETY: `[at, at + len)` is a present range of the direct map
            // (below `lowmem_end`, so inside the mapping, and accessible).
            // `MADV_POPULATE_WRITE` faults its pages in as a write would but
            // writes nothing: no byte any Rust reference or pointer sees changes.
            let populated =
                unsafe { rustix::mm::madvise(at.cast(), len, Advice::LinuxPopulateWrite) };
            if populated.is_err() {
                rustix::fs::fallocate(
                    &self.fd,
                    FallocateFlags::KEEP_SIZE,
                    (r.start.0 * PAGE_SIZE) as u64,
                    len as u64,
                )
                .map_err(HostError::io("fallocate"))?;
            }
        }
        Ok(())
    }

    /// Checks that `len` bytes at `offset` of frame `pfn` exist, and returns their file offset.
    fn file_offset(&self, pfn: Pfn, offset: usize, len: usize) -> Result<u64, HostError> {
        if !self.has_frame(pfn) {
            return Err(HostError::NoMemory { pfn });
        }
        match offset.checked_add(len) {
            Some(end) if end <= PAGE_SIZE => Ok((pfn.0 * PAGE_SIZE + offset) as u64),
            _ => Err(HostError::OutOfFrame { offset, len }),
        }
    }

    /// Copies `buf.len()` bytes at `offset` of frame `pfn` into `buf`, with
    /// `pread` on the memfd: works for lowmem and highmem frames alike.
    ///
    /// # Errors
    ///
    /// [`HostError::NoMemory`] for a frame without memory,
    /// [`HostError::OutOfFrame`] if the bytes run past the frame, and
    /// [`HostError::Io`] if `pread` fails; `buf` is unchanged after the first two.
    ///
    /// # Safety
    ///
    /// Nobody writes those bytes during the call (through the direct map or
    /// any other mapping of the frame): the host copies them outside Rust's
    /// view, so a concurrent write would be a data race.
    pub unsafe fn read_frame(
        &self,
        pfn: Pfn,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), HostError> {
        let mut at = self.file_offset(pfn, offset, buf.len())?;
        let mut rest = buf;
        while !rest.is_empty() {
            let n = rustix::io::pread(&self.fd, &mut *rest, at).map_err(HostError::io("pread"))?;
            if n == 0 {
                return Err(HostError::Io {
                    op: "pread",
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            rest = &mut rest[n..];
            at += n as u64;
        }
        Ok(())
    }

    /// Copies `data` to `offset` of frame `pfn`, with `pwrite` on the memfd:
    /// works for lowmem and highmem frames alike.
    ///
    /// # Errors
    ///
    /// [`HostError::NoMemory`] for a frame without memory,
    /// [`HostError::OutOfFrame`] if the bytes run past the frame (nothing is
    /// written after either), and [`HostError::Io`] if `pwrite` fails.
    ///
    /// # Safety
    ///
    /// The caller owns the frame: no reference to those bytes exists during
    /// the call (through the direct map or any other mapping of the frame).
    pub unsafe fn write_frame(
        &self,
        pfn: Pfn,
        offset: usize,
        data: &[u8],
    ) -> Result<(), HostError> {
        let at = self.file_offset(pfn, offset, data.len())?;
        self.pwrite_all(data, at)
    }

    fn pwrite_all(&self, mut data: &[u8], mut at: u64) -> Result<(), HostError> {
        while !data.is_empty() {
            let n = rustix::io::pwrite(&self.fd, data, at).map_err(HostError::io("pwrite"))?;
            if n == 0 {
                return Err(HostError::Io {
                    op: "pwrite",
                    source: std::io::ErrorKind::WriteZero.into(),
                });
            }
            data = &data[n..];
            at += n as u64;
        }
        Ok(())
    }

    /// Zeroes frames `[start, end)` of the file: punches a hole, which also
    /// gives the memory back to the host, or writes zeros if the host cannot punch.
    fn zero_file(&self, start: Pfn, end: Pfn) -> bool {
        let at = (start.0 * PAGE_SIZE) as u64;
        let len = ((end.0 - start.0) * PAGE_SIZE) as u64;
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if rustix::fs::fallocate(&self.fd, punch, at, len).is_ok() {
            return true;
        }
        static ZEROS: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
        (start.0..end.0).all(|pfn| self.pwrite_all(&ZEROS, (pfn * PAGE_SIZE) as u64).is_ok())
    }
}

// SAFETY: `HostMemory` owns its mapping and file. The only thread-bound
// field is the mapping's base pointer, and a mapping is valid from every thread
// of the process. `HostMemory` itself reads and writes frame bytes only in
// `clear_frames`, `read_frame` and `write_frame`, whose callers guarantee
// that no other access races with them, so sharing it between threads adds
// no race of its own.
unsafe impl Send for HostMemory {}
// SAFETY: As for `Send`: every `&self` method is either free of frame
// accesses or an `unsafe fn` whose caller excludes concurrent access.
unsafe impl Sync for HostMemory {}

// SAFETY: for every `pfn` where `direct_map` returns `Some(p)`:
// 1. `pfn` has memory and is below `lowmem_end`, so `p = base + pfn * PAGE_SIZE`
//    lies in the direct map with its `PAGE_SIZE` bytes (the map is
//    `lowmem_end * PAGE_SIZE` long). `base` comes from `mmap`, aligned to a
//    host page, which is a multiple of `PAGE_SIZE`, so `p` is `PAGE_SIZE`
//    aligned. The frame lies in a range, not a hole, so it is mapped read-write,
//    and the memfd behind it is sealed against shrinking, so every byte stays
//    backed. The mapping is removed only when `HostMemory` drops.
// 2. Distinct frames sit at distinct multiples of `PAGE_SIZE` from `base`, so
//    their byte ranges do not overlap.
// 3. `HostMemory` touches frame bytes only in `clear_frames`, and in
//    `read_frame`/`write_frame`, which are `unsafe fn`s whose callers own the
//    frame, as the owner of a frame may do anything with its bytes. The memfd
//    that could reach the bytes is handed out only by the `unsafe fn memfd`,
//    on the same terms.
unsafe impl PhysMemory for HostMemory {
    fn direct_map(&self, pfn: Pfn) -> Option<NonNull<u8>> {
        if pfn >= self.lowmem_end || !self.has_frame(pfn) {
            return None;
        }
        NonNull::new(self.map.frame(pfn))
    }

    fn virt_to_pfn(&self, addr: usize) -> Option<Pfn> {
        let offset = addr.checked_sub(self.map.base.as_ptr().addr())?;
        if offset >= self.map.len {
            return None;
        }
        let pfn = Pfn(offset / PAGE_SIZE);
        self.has_frame(pfn).then_some(pfn)
    }

    fn has_memory(&self) -> bool {
        true
    }

    /// The direct map is one mapping of the memfd from frame 0, so frame
    /// `pfn` is at `base + pfn * PAGE_SIZE`.
    fn linear_map_base(&self) -> Option<usize> {
        Some(self.map.base.as_ptr().addr())
    }

    /// The end of the mapping: `[0, lowmem_end)` frames from the base.
    fn linear_map_end(&self) -> Option<usize> {
        Some(self.map.base.as_ptr().addr() + self.map.len)
    }

    /// Zeroes the frames: lowmem through the direct map, highmem by punching
    /// a hole in the memfd (zeros, and the memory goes back to the host).
    /// Returns `false`, having changed nothing, if some frame has no memory.
    unsafe fn clear_frames(&self, pfn: Pfn, count: usize) -> bool {
        let Some(end) = pfn.checked_add(count) else {
            return false;
        };
        if !self.covers(pfn, end) {
            return false;
        }
        let low_end = min(end, self.lowmem_end);
        if pfn < low_end {
            // SAFETY: 1. Every frame of `[pfn, low_end)` has memory (checked by
            // `covers`) and is below `lowmem_end`, so the bytes lie in the
            // direct map, read-write, and contiguous. 2. The caller owns the
            // frames, so no other reference to these bytes exists now.
            unsafe {
                self.map
                    .frame(pfn)
                    .write_bytes(0, (low_end.0 - pfn.0) * PAGE_SIZE)
            };
        }
        let high_start = max(pfn, self.lowmem_end);
        high_start >= end || self.zero_file(high_start, end)
    }
}

impl fmt::Debug for HostMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostMemory")
            .field("ranges", &self.ranges)
            .field("end", &self.end)
            .field("lowmem_end", &self.lowmem_end)
            .field("direct_map", &self.map.base)
            .field("direct_map_len", &self.map.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
