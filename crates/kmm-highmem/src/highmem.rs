//! `Highmem`: permanent kmaps over the pkmap window (`kmap_high`,
//! `kunmap_high`, `flush_all_zero_pkmaps` of `mm/highmem.c`) and the per-CPU
//! stack of `kmap_atomic`/`kmap_local_page` slots in the fixmap window.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::Backoff;
use kmm_page::{Mmu, PAGE_SIZE, Pfn, PhysMemory, Prot, VirtAddr};
use kmm_percpu::{CpuContext, PerCpu};
use spin::Mutex;

use crate::guard::{AtomicKmap, KmapGuard, LocalKmap, StackKmap};
use crate::hash::PageTable;
use crate::{HighmemError, LocalKind};

/// The number of pkmap slots on i386 without PAE (`LAST_PKMAP`,
/// `arch/x86/include/asm/pgtable_32_areas.h`): one page table, 4 MiB.
pub const LAST_PKMAP: usize = 1024;

/// The number of `kmap_atomic`/`kmap_local` slots per CPU (`KM_MAX_IDX`,
/// `include/asm-generic/kmap_size.h`, without `CONFIG_DEBUG_KMAP_LOCAL`).
pub const KM_MAX_IDX: usize = 16;

/// The pkmap state that `kmap_lock` protects.
#[derive(Debug)]
pub(crate) struct Pkmap {
    /// `pkmap_count`: 0 free and flushed, 1 no users but not yet flushed,
    /// `n > 1` in use by `n - 1` kmaps.
    pub(crate) count: Box<[u32]>,
    /// The page each slot maps (`Some` exactly when the count is not 0).
    pub(crate) page: Box<[Option<Pfn>]>,
    /// Page → slot (`page_address_htable`).
    table: PageTable,
    /// The slot handed out last; the scan for a free slot starts after it.
    last_pkmap_nr: usize,
    /// The number of slots with count 0.
    nr_free: usize,
    /// The number of slots with count 1.
    nr_unused: usize,
    /// The number of outstanding `kmap` calls on highmem pages: the sum of
    /// `count - 1` over the slots with count at least 2.
    pub(crate) users: usize,
    /// How many times `flush_all_zero_pkmaps` ran.
    flushes: u64,
}

/// A snapshot of the pkmap slots, for statistics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PkmapStats {
    /// Slots with `pkmap_count == 0`: unmapped, usable at once.
    pub free: usize,
    /// Slots with `pkmap_count == 1`: no users, usable after the next flush.
    pub unused: usize,
    /// Slots with `pkmap_count >= 2`: in use.
    pub in_use: usize,
    /// Outstanding `kmap` calls on highmem pages (`Σ (count - 1)` over slots in use).
    pub users: usize,
    /// How many times `flush_all_zero_pkmaps` ran.
    pub flushes: u64,
    /// Callers of [`Highmem::kmap`] waiting for a slot right now.
    pub waiters: usize,
    /// How many calls of [`Highmem::kmap`] have had to wait so far.
    pub waited: usize,
}

/// One `kmap_atomic`/`kmap_local_page` mapping on a CPU's stack.
#[derive(Clone, Copy, Debug)]
struct StackEntry {
    addr: VirtAddr,
    pfn: Pfn,
    kind: LocalKind,
    /// Its guard was dropped while newer mappings lived: it is popped as soon
    /// as it becomes the top.
    released: bool,
}

/// One CPU's stack of local mappings (`kmap_ctrl` of `include/linux/highmem-internal.h`,
/// kept per CPU here).
#[derive(Debug)]
struct KmapStack {
    entries: [Option<StackEntry>; KM_MAX_IDX],
    depth: usize,
    /// Outstanding `kmap_atomic` calls on lowmem pages: they take no slot but
    /// hold preemption disabled until their `kunmap_atomic`.
    lowmem_atomic: usize,
}

impl KmapStack {
    fn new() -> KmapStack {
        KmapStack {
            entries: [None; KM_MAX_IDX],
            depth: 0,
            lowmem_atomic: 0,
        }
    }

    fn top(&self) -> Option<StackEntry> {
        self.depth.checked_sub(1).and_then(|i| self.entries[i])
    }
}

/// Highmem mappings of one machine: permanent kmaps in a window of
/// `last_pkmap` pkmap slots, and `KM_MAX_IDX` (16) `kmap_atomic` /
/// `kmap_local_page` slots per CPU in a fixmap window.
///
/// Lowmem frames (those [`PhysMemory::direct_map`] answers for) are never
/// given a slot: every map function returns their direct-map address, as
/// `page_address` does.
///
/// The pkmap slots follow `mm/highmem.c`: `pkmap_count` is 0 for a free slot,
/// 1 for a slot without users whose mapping is not flushed yet, and `n > 1`
/// for `n - 1` users; a page mapped twice shares its slot; a slot with count
/// 1 is reused only after `flush_all_zero_pkmaps`, which runs whenever the
/// scan for a free slot wraps around; [`Highmem::kmap`] waits while every
/// slot has users.
///
/// The stack slots are per CPU: slot `idx` of CPU `cpu` is fixmap page
/// `cpu * KM_MAX_IDX + idx`. Mappings are released in LIFO order, and the
/// mapping CPU keeps them: `kmap_atomic` disables preemption until its
/// `kunmap_atomic`, and `kmap_local_page` of a highmem page pins the caller
/// the same way. As in the kernel, a CPU's stack belongs to whoever runs on
/// that CPU: threads that share a CPU (a shared `FixedCpu`, or several threads
/// bound to one `HostCpus` slot) and hold stack mappings at the same time see
/// each other's entries and may get [`HighmemError::NotLifo`].
pub struct Highmem {
    mmu: Arc<dyn Mmu>,
    phys: Arc<dyn PhysMemory>,
    cpus: Arc<dyn CpuContext>,
    pkmap_base: VirtAddr,
    last_pkmap: usize,
    fixmap_base: VirtAddr,
    nr_cpus: usize,
    /// `kmap_lock` and the state it protects.
    pub(crate) pkmap: Mutex<Pkmap>,
    /// Bumped (under `kmap_lock`) whenever a slot loses its last user: the
    /// wake-up of `pkmap_map_wait`.
    wakeups: AtomicUsize,
    /// Callers waiting in [`Highmem::kmap`].
    waiters: AtomicUsize,
    /// Calls of [`Highmem::kmap`] that have waited.
    waited: AtomicUsize,
    stacks: PerCpu<KmapStack>,
}

/// Checks that `[start, start + pages)` is page aligned and inside `[lo, hi)`;
/// returns the end.
fn check_window(
    start: VirtAddr,
    pages: usize,
    (lo, hi): (VirtAddr, VirtAddr),
) -> Result<VirtAddr, HighmemError> {
    if start.page_offset() != 0 {
        return Err(HighmemError::Misaligned(start));
    }
    let end = pages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| start.0.checked_add(len))
        .map(VirtAddr);
    match end {
        Some(end) if lo <= start && end <= hi => Ok(end),
        _ => Err(HighmemError::OutsideWindow { start, pages }),
    }
}

impl Highmem {
    /// Sets up the pkmap window `[pkmap_base, + last_pkmap pages)` and the
    /// fixmap window `[fixmap_base, + KM_MAX_IDX * nr_cpus pages)` on `mmu`,
    /// for the frames of `phys` and the CPUs of `cpus`.
    ///
    /// The kernel sets these up in `permanent_kmaps_init` and
    /// `kmap_init` (`arch/x86/mm/init_32.c`). Linux wants `LAST_PKMAP` to be
    /// a power of two (it masks with `LAST_PKMAP_MASK`); any count from 1 up
    /// works here.
    ///
    /// # Errors
    ///
    /// [`HighmemError::NoPkmapSlots`] if `last_pkmap == 0`,
    /// [`HighmemError::Misaligned`] for a base that is not page aligned,
    /// [`HighmemError::OutsideWindow`] for a window that leaves
    /// [`Mmu::window`], [`HighmemError::WindowsOverlap`] if the two overlap,
    /// and [`HighmemError::Mmu`] with [`kmm_page::MmuError::AlreadyMapped`] if
    /// a page of either window is mapped already. Nothing is mapped after any
    /// of them.
    pub fn new(
        mmu: Arc<dyn Mmu>,
        phys: Arc<dyn PhysMemory>,
        cpus: Arc<dyn CpuContext>,
        pkmap_base: VirtAddr,
        last_pkmap: usize,
        fixmap_base: VirtAddr,
    ) -> Result<Highmem, HighmemError> {
        if last_pkmap == 0 {
            return Err(HighmemError::NoPkmapSlots);
        }
        let nr_cpus = cpus.nr_cpus();
        let window = mmu.window();
        let pkmap_end = check_window(pkmap_base, last_pkmap, window)?;
        let fixmap_pages = Highmem::fixmap_pages(nr_cpus);
        let fixmap_end = check_window(fixmap_base, fixmap_pages, window)?;
        if pkmap_base < fixmap_end && fixmap_base < pkmap_end {
            return Err(HighmemError::WindowsOverlap);
        }
        let pages = (0..last_pkmap)
            .map(|i| pkmap_base.0 + i * PAGE_SIZE)
            .chain((0..fixmap_pages).map(|i| fixmap_base.0 + i * PAGE_SIZE));
        for va in pages.map(VirtAddr) {
            if let Some(pfn) = mmu.translate(va) {
                return Err(kmm_page::MmuError::AlreadyMapped { va, pfn }.into());
            }
        }
        Ok(Highmem {
            mmu,
            phys,
            cpus,
            pkmap_base,
            last_pkmap,
            fixmap_base,
            nr_cpus,
            pkmap: Mutex::new(Pkmap {
                count: vec![0; last_pkmap].into_boxed_slice(),
                page: vec![None; last_pkmap].into_boxed_slice(),
                table: PageTable::new(),
                last_pkmap_nr: 0,
                nr_free: last_pkmap,
                nr_unused: 0,
                users: 0,
                flushes: 0,
            }),
            wakeups: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            waited: AtomicUsize::new(0),
            stacks: PerCpu::new(nr_cpus, |_| KmapStack::new()),
        })
    }

    /// The number of fixmap pages the stack slots of `nr_cpus` CPUs take:
    /// `KM_MAX_IDX * nr_cpus` (at least one CPU).
    pub const fn fixmap_pages(nr_cpus: usize) -> usize {
        let nr_cpus = if nr_cpus == 0 { 1 } else { nr_cpus };
        KM_MAX_IDX * nr_cpus
    }

    /// The number of pkmap slots (`LAST_PKMAP`).
    pub fn last_pkmap(&self) -> usize {
        self.last_pkmap
    }

    /// The pkmap window `[PKMAP_BASE, PKMAP_BASE + LAST_PKMAP pages)`.
    pub fn pkmap_window(&self) -> (VirtAddr, VirtAddr) {
        (
            self.pkmap_base,
            VirtAddr(self.pkmap_base.0 + self.last_pkmap * PAGE_SIZE),
        )
    }

    /// The fixmap window of the stack slots, `KM_MAX_IDX * nr_cpus` pages.
    pub fn fixmap_window(&self) -> (VirtAddr, VirtAddr) {
        (
            self.fixmap_base,
            VirtAddr(self.fixmap_base.0 + Highmem::fixmap_pages(self.nr_cpus) * PAGE_SIZE),
        )
    }

    /// The address of pkmap slot `nr` (`PKMAP_ADDR`), or `None` past the last slot.
    #[doc(alias = "PKMAP_ADDR")]
    pub fn pkmap_addr(&self, nr: usize) -> Option<VirtAddr> {
        (nr < self.last_pkmap).then(|| self.slot_addr(nr))
    }

    /// The pkmap slot holding `addr` (`PKMAP_NR`), or `None` outside the window.
    #[doc(alias = "PKMAP_NR")]
    pub fn pkmap_nr(&self, addr: VirtAddr) -> Option<usize> {
        let nr = addr.0.checked_sub(self.pkmap_base.0)? / PAGE_SIZE;
        (nr < self.last_pkmap).then_some(nr)
    }

    fn slot_addr(&self, nr: usize) -> VirtAddr {
        VirtAddr(self.pkmap_base.0 + nr * PAGE_SIZE)
    }

    fn fixmap_addr(&self, cpu: usize, idx: usize) -> VirtAddr {
        VirtAddr(self.fixmap_base.0 + (cpu * KM_MAX_IDX + idx) * PAGE_SIZE)
    }

    fn in_fixmap(&self, addr: VirtAddr) -> bool {
        let (start, end) = self.fixmap_window();
        start <= addr && addr < end
    }

    /// The direct-map address of a lowmem frame.
    fn lowmem_addr(&self, pfn: Pfn) -> Option<VirtAddr> {
        self.phys
            .direct_map(pfn)
            .map(|p| VirtAddr(p.as_ptr().addr()))
    }

    /// Whether `addr` lies in the direct map of a lowmem frame.
    fn is_lowmem_addr(&self, addr: VirtAddr) -> bool {
        self.phys
            .virt_to_pfn(addr.0)
            .is_some_and(|pfn| self.phys.direct_map(pfn).is_some())
    }

    /// A pointer to the page mapped at `addr` for `pfn`: the direct map for
    /// lowmem, [`Mmu::as_ptr`] for a slot.
    pub(crate) fn ptr_of(&self, pfn: Pfn, addr: VirtAddr) -> Option<NonNull<u8>> {
        match self.phys.direct_map(pfn) {
            Some(p) if p.as_ptr().addr() == addr.0 => Some(p),
            _ => self.mmu.as_ptr(addr),
        }
    }

    /// The `pkmap_count` of slot `nr`, or `None` past the last slot.
    pub fn pkmap_count(&self, nr: usize) -> Option<u32> {
        self.pkmap.lock().count.get(nr).copied()
    }

    /// A snapshot of the pkmap slots.
    pub fn pkmap_stats(&self) -> PkmapStats {
        let st = self.pkmap.lock();
        PkmapStats {
            free: st.nr_free,
            unused: st.nr_unused,
            in_use: self.last_pkmap - st.nr_free - st.nr_unused,
            users: st.users,
            flushes: st.flushes,
            waiters: self.waiters.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
        }
    }

    /// The virtual address of `pfn` (`page_address`, `mm/highmem.c`): the
    /// direct-map address of a lowmem frame; for a highmem frame its pkmap
    /// address while it holds a slot (also with count 1, until the flush), else
    /// `None`. Stack mappings are not found here, as in the kernel.
    pub fn page_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        if let Some(addr) = self.lowmem_addr(pfn) {
            return Some(addr);
        }
        let st = self.pkmap.lock();
        st.table.get(pfn).map(|nr| self.slot_addr(nr))
    }

    /// Maps `pfn` for as long as the guard lives (`kmap`,
    /// `include/linux/highmem-internal.h`, and `kmap_high`, `mm/highmem.c`).
    ///
    /// A lowmem frame gets its direct-map address and no slot. A highmem frame
    /// that holds a slot gets one more user of that slot; otherwise the scan
    /// takes the next free slot after the last one handed out, flushing the
    /// unused slots whenever it wraps to slot 0. While every slot has users the
    /// call waits (spinning, and yielding the thread with the `std` feature)
    /// until a `kunmap` frees one, then tries again. Do not hold one kmap while
    /// waiting for another: with more such callers than slots that deadlocks,
    /// as in the kernel.
    ///
    /// # Errors
    ///
    /// [`HighmemError::Mmu`] if the MMU refuses the mapping (a frame without
    /// memory), [`HighmemError::TooManyUsers`] if the page's count is full.
    #[doc(alias = "kmap_high")]
    pub fn kmap(&self, pfn: Pfn) -> Result<KmapGuard<'_>, HighmemError> {
        if let Some(addr) = self.lowmem_addr(pfn) {
            return Ok(KmapGuard::new(self, pfn, addr));
        }
        let backoff = Backoff::new();
        let mut waiting = false;
        let result = loop {
            match self.kmap_high(pfn) {
                Ok(Ok(addr)) => break Ok(addr),
                Ok(Err(seen)) => {
                    if !waiting {
                        waiting = true;
                        self.waiters.fetch_add(1, Ordering::Relaxed);
                        self.waited.fetch_add(1, Ordering::Relaxed);
                    }
                    while self.wakeups.load(Ordering::Acquire) == seen {
                        backoff.snooze();
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if waiting {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
        result.map(|addr| KmapGuard::new(self, pfn, addr))
    }

    /// Like [`Highmem::kmap`], but fails instead of waiting for a slot.
    ///
    /// # Errors
    ///
    /// [`HighmemError::NoSlot`] when every slot has users, and the errors of
    /// [`Highmem::kmap`].
    pub fn try_kmap(&self, pfn: Pfn) -> Result<KmapGuard<'_>, HighmemError> {
        if let Some(addr) = self.lowmem_addr(pfn) {
            return Ok(KmapGuard::new(self, pfn, addr));
        }
        match self.kmap_high(pfn)? {
            Ok(addr) => Ok(KmapGuard::new(self, pfn, addr)),
            Err(_) => Err(HighmemError::NoSlot),
        }
    }

    /// One attempt of `kmap_high` under `kmap_lock`: the address, or (as
    /// `Ok(Err(seen))`) the wake-up generation to wait on because every slot
    /// has users.
    fn kmap_high(&self, pfn: Pfn) -> Result<Result<VirtAddr, usize>, HighmemError> {
        let mut st = self.pkmap.lock();
        let nr = match st.table.get(pfn) {
            Some(nr) => nr,
            None => match self.find_slot(&st) {
                Some((nr, flush)) => {
                    self.map_new_virtual(&mut st, pfn, nr, flush)?;
                    nr
                }
                None => return Ok(Err(self.wakeups.load(Ordering::Relaxed))),
            },
        };
        let count = st.count[nr];
        if count == u32::MAX {
            return Err(HighmemError::TooManyUsers(pfn));
        }
        if count == 1 {
            st.nr_unused -= 1;
        }
        st.count[nr] = count + 1;
        st.users += 1;
        Ok(Ok(self.slot_addr(nr)))
    }

    /// The slot the scan of `map_new_virtual` would take, and whether it wraps
    /// to slot 0 on the way (which flushes the unused slots, making count-1
    /// slots usable); `None` when every slot has users.
    fn find_slot(&self, st: &Pkmap) -> Option<(usize, bool)> {
        if st.nr_free + st.nr_unused == 0 {
            return None;
        }
        let mut nr = st.last_pkmap_nr;
        let mut flushed = false;
        let mut budget = self.last_pkmap;
        loop {
            nr = if nr + 1 == self.last_pkmap { 0 } else { nr + 1 };
            if nr == 0 {
                flushed = true;
                budget = self.last_pkmap;
            }
            let count = st.count[nr];
            if count == 0 || (flushed && count == 1) {
                return Some((nr, flushed));
            }
            budget -= 1;
            if budget == 0 {
                return None;
            }
        }
    }

    /// Installs `pfn` in slot `nr` with count 1 (`map_new_virtual`,
    /// `mm/highmem.c`), flushing the unused slots first when `flush`.
    ///
    /// The new mapping is made before anything else changes, so a refused
    /// mapping leaves the state as it was.
    fn map_new_virtual(
        &self,
        st: &mut Pkmap,
        pfn: Pfn,
        nr: usize,
        flush: bool,
    ) -> Result<(), HighmemError> {
        let va = self.slot_addr(nr);
        // A count-1 slot is only chosen when the scan flushes: take down its
        // stale mapping here, and put it back if the new one is refused.
        let stale = st.page[nr];
        if stale.is_some() {
            self.mmu.unmap(va)?;
        }
        if let Err(e) = self.mmu.map(va, pfn, Prot::KERNEL) {
            if let Some(old) = stale
                && self.mmu.map(va, old, Prot::KERNEL).is_err()
            {
                // The old mapping cannot come back: drop it as the flush would have.
                self.forget_slot(st, nr);
                self.mmu.flush_tlb_range(va, VirtAddr(va.0 + PAGE_SIZE));
            }
            return Err(e.into());
        }
        if stale.is_some() {
            self.forget_slot(st, nr);
        }
        if flush {
            self.flush_locked(st, stale.is_some());
        }
        st.last_pkmap_nr = nr;
        st.count[nr] = 1;
        st.nr_free -= 1;
        st.nr_unused += 1;
        st.page[nr] = Some(pfn);
        st.table.insert(pfn, nr);
        Ok(())
    }

    /// Turns count-1 slot `nr`, already unmapped, into a free slot.
    fn forget_slot(&self, st: &mut Pkmap, nr: usize) {
        if let Some(old) = st.page[nr].take() {
            st.table.remove(old);
        }
        st.count[nr] = 0;
        st.nr_unused -= 1;
        st.nr_free += 1;
    }

    /// Frees every slot with count 1 (`flush_all_zero_pkmaps`, `mm/highmem.c`):
    /// its mapping is removed and its page forgotten, then the TLB is flushed
    /// once for the whole pkmap window if anything was removed. The scan of
    /// [`Highmem::kmap`] calls this whenever it wraps to slot 0; afterwards no
    /// slot has count 1.
    pub fn flush_all_zero_pkmaps(&self) {
        let mut st = self.pkmap.lock();
        self.flush_locked(&mut st, false);
    }

    fn flush_locked(&self, st: &mut Pkmap, mut flush_tlb: bool) {
        st.flushes += 1;
        if st.nr_unused != 0 {
            for nr in 0..self.last_pkmap {
                if st.count[nr] == 1 {
                    // The slot maps its page (the invariant), so this cannot
                    // fail; if an MMU says otherwise, the slot is unmapped anyway.
                    let _ = self.mmu.unmap(self.slot_addr(nr));
                    self.forget_slot(st, nr);
                    flush_tlb = true;
                }
            }
        }
        if flush_tlb {
            let (start, end) = self.pkmap_window();
            self.mmu.flush_tlb_range(start, end);
        }
    }

    /// Drops one user of the kmap of `pfn` (`kunmap`, and `kunmap_high`,
    /// `mm/highmem.c`). When the slot loses its last user its count becomes
    /// 1 and waiters in [`Highmem::kmap`] try again. Unmapping a lowmem frame
    /// does nothing, as in the kernel.
    ///
    /// # Errors
    ///
    /// [`HighmemError::NotMapped`] if the highmem frame has no outstanding
    /// kmap (no slot, or a slot with count 1, where the kernel would `BUG()`).
    #[doc(alias = "kunmap_high")]
    pub fn kunmap(&self, pfn: Pfn) -> Result<(), HighmemError> {
        if self.phys.direct_map(pfn).is_some() {
            return Ok(());
        }
        let mut st = self.pkmap.lock();
        let nr = st.table.get(pfn).ok_or(HighmemError::NotMapped(pfn))?;
        let count = st.count[nr];
        if count <= 1 {
            return Err(HighmemError::NotMapped(pfn));
        }
        st.count[nr] = count - 1;
        st.users -= 1;
        if count == 2 {
            st.nr_unused += 1;
            self.wakeups.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Maps `pfn` in the next slot of this CPU's stack and disables preemption
    /// until the guard drops (`kmap_atomic`, `include/linux/highmem-internal.h`,
    /// and `__kmap_local_pfn_prot`, `mm/highmem.c`). A lowmem frame takes no
    /// slot but still disables preemption.
    ///
    /// # Errors
    ///
    /// [`HighmemError::StackFull`] with 16 stack mappings on this CPU,
    /// [`HighmemError::Mmu`] if the MMU refuses the mapping, and
    /// [`HighmemError::PerCpu`] if the CPU context reports a CPU this machine
    /// does not have. Preemption is enabled again after each.
    pub fn kmap_atomic(&self, pfn: Pfn) -> Result<AtomicKmap<'_>, HighmemError> {
        self.cpus.preempt_disable();
        match self.push_local(pfn, LocalKind::Atomic) {
            Ok(addr) => Ok(StackKmap::new(self, pfn, addr, LocalKind::Atomic)),
            Err(e) => {
                self.cpus.preempt_enable();
                Err(e)
            }
        }
    }

    /// Maps `pfn` in the next slot of this CPU's stack until the guard drops
    /// (`kmap_local_page`, `include/linux/highmem-internal.h`). A highmem frame
    /// pins the caller to its CPU, which the model does by disabling
    /// preemption; a lowmem frame takes no slot and does not pin.
    ///
    /// # Errors
    ///
    /// As [`Highmem::kmap_atomic`].
    pub fn kmap_local_page(&self, pfn: Pfn) -> Result<LocalKmap<'_>, HighmemError> {
        let pin = self.phys.direct_map(pfn).is_none();
        if pin {
            self.cpus.preempt_disable();
        }
        match self.push_local(pfn, LocalKind::Local) {
            Ok(addr) => Ok(StackKmap::new(self, pfn, addr, LocalKind::Local)),
            Err(e) => {
                if pin {
                    self.cpus.preempt_enable();
                }
                Err(e)
            }
        }
    }

    /// Pushes a mapping of `pfn` on this CPU's stack (the caller has disabled
    /// preemption where needed).
    fn push_local(&self, pfn: Pfn, kind: LocalKind) -> Result<VirtAddr, HighmemError> {
        let cpu = self.cpus.current_cpu();
        let mut stack = self.stacks.per_cpu(cpu)?;
        if let Some(addr) = self.lowmem_addr(pfn) {
            if kind == LocalKind::Atomic {
                stack.lowmem_atomic += 1;
            }
            return Ok(addr);
        }
        let idx = stack.depth;
        if idx == KM_MAX_IDX {
            return Err(HighmemError::StackFull { cpu });
        }
        let addr = self.fixmap_addr(cpu, idx);
        self.mmu.map(addr, pfn, Prot::KERNEL)?;
        stack.entries[idx] = Some(StackEntry {
            addr,
            pfn,
            kind,
            released: false,
        });
        stack.depth = idx + 1;
        Ok(addr)
    }

    /// Releases the most recent `kmap_atomic` mapping of this CPU and enables
    /// preemption again (`kunmap_atomic`, `include/linux/highmem-internal.h`).
    /// `addr` may point anywhere inside the mapped page.
    ///
    /// # Errors
    ///
    /// [`HighmemError::NotLifo`] if `addr` is an older mapping of this CPU,
    /// [`HighmemError::WrongKind`] if it is a `kmap_local_page` mapping,
    /// [`HighmemError::NotLocalMapped`] if it is no stack mapping of this CPU
    /// (for a lowmem address: no `kmap_atomic` of lowmem is outstanding), and
    /// [`HighmemError::Mmu`] if the MMU cannot unmap it.
    pub fn kunmap_atomic(&self, addr: VirtAddr) -> Result<(), HighmemError> {
        self.pop_local(addr, LocalKind::Atomic)
    }

    /// Releases the most recent `kmap_local_page` mapping of this CPU
    /// (`kunmap_local`, `include/linux/highmem-internal.h`); releasing a
    /// lowmem address does nothing.
    ///
    /// # Errors
    ///
    /// As [`Highmem::kunmap_atomic`], with [`HighmemError::WrongKind`] for a
    /// `kmap_atomic` mapping.
    pub fn kunmap_local(&self, addr: VirtAddr) -> Result<(), HighmemError> {
        self.pop_local(addr, LocalKind::Local)
    }

    fn pop_local(&self, addr: VirtAddr, kind: LocalKind) -> Result<(), HighmemError> {
        self.pop_local_inner(addr, kind, false)
    }

    /// Releases a stack mapping from a guard's `drop`: out of LIFO order, the
    /// entry is marked and popped once the newer mappings are gone, so guards
    /// dropped in any order (a `Vec` of them, say) leave the stack empty.
    pub(crate) fn release_local(&self, addr: VirtAddr, kind: LocalKind) {
        // The only error a guard can meet is `NotLifo`, which is deferred;
        // nothing else can be done about the others in `drop`.
        let _ = self.pop_local_inner(addr, kind, true);
    }

    fn pop_local_inner(
        &self,
        addr: VirtAddr,
        kind: LocalKind,
        defer: bool,
    ) -> Result<(), HighmemError> {
        let page = addr.page_align_down();
        let mut enables = 1;
        if self.in_fixmap(page) {
            let cpu = self.cpus.current_cpu();
            let mut stack = self.stacks.per_cpu(cpu)?;
            let Some(top) = stack.top() else {
                return Err(HighmemError::NotLocalMapped(addr));
            };
            if top.addr != page {
                let depth = stack.depth;
                let below = stack.entries[..depth]
                    .iter_mut()
                    .flatten()
                    .find(|e| e.addr == page && !e.released);
                return match below {
                    Some(e) if defer && e.kind == kind => {
                        e.released = true;
                        Ok(())
                    }
                    Some(_) => Err(HighmemError::NotLifo {
                        addr: page,
                        top: top.addr,
                    }),
                    None => Err(HighmemError::NotLocalMapped(addr)),
                };
            }
            if top.kind != kind {
                return Err(HighmemError::WrongKind {
                    addr: page,
                    mapped_by: top.kind,
                });
            }
            self.unmap_top(&mut stack)?;
            // Pop the older mappings whose guards were dropped early.
            // Every stack entry holds one `preempt_disable`: `kmap_atomic`'s,
            // or the pin of `kmap_local_page` of a highmem frame.
            while stack.top().is_some_and(|e| e.released) && self.unmap_top(&mut stack).is_ok() {
                enables += 1;
            }
        } else if self.is_lowmem_addr(addr) {
            if kind == LocalKind::Local {
                return Ok(());
            }
            let cpu = self.cpus.current_cpu();
            let mut stack = self.stacks.per_cpu(cpu)?;
            if stack.lowmem_atomic == 0 {
                return Err(HighmemError::NotLocalMapped(addr));
            }
            stack.lowmem_atomic -= 1;
        } else {
            return Err(HighmemError::NotLocalMapped(addr));
        }
        for _ in 0..enables {
            self.cpus.preempt_enable();
        }
        Ok(())
    }

    /// Unmaps and pops the top of `stack` (`kunmap_local_indexed`, `mm/highmem.c`).
    fn unmap_top(&self, stack: &mut KmapStack) -> Result<(), HighmemError> {
        let Some(top) = stack.top() else {
            return Ok(());
        };
        self.mmu.unmap(top.addr)?;
        self.mmu
            .flush_tlb_range(top.addr, VirtAddr(top.addr.0 + PAGE_SIZE));
        let depth = stack.depth - 1;
        stack.entries[depth] = None;
        stack.depth = depth;
        Ok(())
    }

    /// The number of stack mappings CPU `cpu` holds (`kmap_ctrl.idx`).
    ///
    /// # Errors
    ///
    /// [`HighmemError::PerCpu`] if `cpu` does not exist.
    pub fn kmap_local_depth(&self, cpu: usize) -> Result<usize, HighmemError> {
        Ok(self.stacks.per_cpu(cpu)?.depth)
    }

    /// The frames on CPU `cpu`'s stack, oldest first, with their addresses
    /// (including those whose guard was dropped early and that wait for the
    /// newer mappings to go).
    ///
    /// # Errors
    ///
    /// [`HighmemError::PerCpu`] if `cpu` does not exist.
    pub fn kmap_local_stack(
        &self,
        cpu: usize,
    ) -> Result<alloc::vec::Vec<(VirtAddr, Pfn, LocalKind)>, HighmemError> {
        let stack = self.stacks.per_cpu(cpu)?;
        Ok(stack.entries[..stack.depth]
            .iter()
            .flatten()
            .map(|e| (e.addr, e.pfn, e.kind))
            .collect())
    }

    /// Checks every invariant of the pkmap slots and the stacks, against the
    /// MMU; returns the first violation found.
    ///
    /// Pkmap: a count-0 slot has no page and no mapping; any other slot maps
    /// its page, which the page table finds there; a page holds at most one
    /// slot; the free, unused and user totals match the counts. Stacks: depth
    /// at most `KM_MAX_IDX`; entry `i` of CPU `cpu` maps its frame at fixmap
    /// page `cpu * KM_MAX_IDX + i`; the top entry is not one whose guard was
    /// dropped early; the slots above the depth are unmapped.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_pkmap()?;
        for cpu in 0..self.nr_cpus {
            self.check_stack(cpu)?;
        }
        Ok(())
    }

    fn check_pkmap(&self) -> Result<(), String> {
        let st = self.pkmap.lock();
        let (mut free, mut unused, mut users, mut pages) = (0, 0, 0, 0);
        if st.last_pkmap_nr >= self.last_pkmap {
            return Err(format!("last_pkmap_nr {} out of range", st.last_pkmap_nr));
        }
        for nr in 0..self.last_pkmap {
            let va = self.slot_addr(nr);
            let mapped = self.mmu.translate(va);
            match (st.count[nr], st.page[nr]) {
                (0, None) if mapped.is_none() => free += 1,
                (0, page) => {
                    return Err(format!(
                        "free slot {nr} has page {page:?} and mapping {mapped:?}"
                    ));
                }
                (count, Some(pfn)) => {
                    if mapped != Some(pfn) {
                        return Err(format!(
                            "slot {nr} (count {count}) holds pfn {pfn} but maps {mapped:?}"
                        ));
                    }
                    if st.table.get(pfn) != Some(nr) {
                        return Err(format!(
                            "slot {nr} holds pfn {pfn}, the table says {:?}",
                            st.table.get(pfn)
                        ));
                    }
                    if count == 1 {
                        unused += 1;
                    } else {
                        users += count as usize - 1;
                    }
                    pages += 1;
                }
                (count, None) => return Err(format!("slot {nr} has count {count} but no page")),
            }
        }
        if st.table.len() != pages {
            return Err(format!(
                "{} pages in the table, {pages} slots hold a page",
                st.table.len()
            ));
        }
        if let Some((pfn, nr)) = st.table.iter().find(|&(pfn, nr)| st.page[nr] != Some(pfn)) {
            return Err(format!(
                "the table puts pfn {pfn} in slot {nr}, which holds {:?}",
                st.page[nr]
            ));
        }
        if (free, unused, users) != (st.nr_free, st.nr_unused, st.users) {
            return Err(format!(
                "counted free/unused/users {free}/{unused}/{users}, recorded {}/{}/{}",
                st.nr_free, st.nr_unused, st.users
            ));
        }
        Ok(())
    }

    fn check_stack(&self, cpu: usize) -> Result<(), String> {
        let stack = self
            .stacks
            .per_cpu(cpu)
            .map_err(|e| format!("cpu {cpu}: {e}"))?;
        if stack.depth > KM_MAX_IDX {
            return Err(format!("cpu {cpu}: depth {} above KM_MAX_IDX", stack.depth));
        }
        for idx in 0..KM_MAX_IDX {
            let va = self.fixmap_addr(cpu, idx);
            let mapped = self.mmu.translate(va);
            match (idx < stack.depth, stack.entries[idx]) {
                (true, Some(e))
                    if e.addr == va
                        && mapped == Some(e.pfn)
                        && !(e.released && idx + 1 == stack.depth) => {}
                (false, None) if mapped.is_none() => {}
                (_, entry) => {
                    return Err(format!(
                        "cpu {cpu} slot {idx} (depth {}): entry {entry:?}, mapping {mapped:?}",
                        stack.depth
                    ));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Highmem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Highmem")
            .field("pkmap_window", &self.pkmap_window())
            .field("fixmap_window", &self.fixmap_window())
            .field("nr_cpus", &self.nr_cpus)
            .field("pkmap", &self.pkmap_stats())
            .finish_non_exhaustive()
    }
}
