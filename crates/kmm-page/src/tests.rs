//! Unit tests of frames, maps and frame lists.

use alloc::vec::Vec;

use crate::*;

fn map() -> MemMap {
    MemMap::new(&[
        PfnRange::new(32, 48),
        PfnRange::new(0, 16),
        PfnRange::new(16, 20),
    ])
    .unwrap()
}

#[test]
fn frame_is_24_bytes() {
    assert_eq!(core::mem::size_of::<PageFrame>(), 24);
}

#[test]
fn ranges_merge_and_holes_have_no_frames() {
    let m = map();
    assert_eq!(m.len(), 36);
    assert_eq!(
        m.ranges().collect::<Vec<_>>(),
        [PfnRange::new(0, 20), PfnRange::new(32, 48)]
    );
    assert_eq!(m.span(), Some(PfnRange::new(0, 48)));
    for p in 0..60 {
        let present = p < 20 || (32..48).contains(&p);
        assert_eq!(m.contains(Pfn(p)), present, "pfn {p}");
        if let Some(i) = m.index_of(Pfn(p)) {
            assert_eq!(m.pfn_of(i), Pfn(p));
            let page = m.pfn_to_page(Pfn(p)).unwrap();
            assert_eq!(m.page_to_pfn(page), Some(Pfn(p)));
        }
    }
    let other = PageFrame::new();
    assert_eq!(m.page_to_pfn(&other), None);
}

#[test]
fn overlapping_ranges_are_an_error() {
    let e = MemMap::new(&[PfnRange::new(0, 10), PfnRange::new(5, 12)]).unwrap_err();
    assert!(matches!(e, MemMapError::Overlap { .. }));
}

#[test]
fn boot_frames_are_reserved_with_one_reference() {
    let m = map();
    let f = m.pfn_to_page(Pfn(3)).unwrap();
    assert!(f.test(PageFlags::RESERVED));
    assert_eq!(f.refcount(), 1);
    assert_eq!(f.mapcount(), 0);
}

#[test]
fn frame_fields_do_not_disturb_each_other() {
    let f = PageFrame::new();
    f.set_zone(gfp::ZoneType::HighMem);
    f.set_migratetype(gfp::MigrateType::Reclaimable);
    f.set_order(Some(10));
    f.set_page_type(PageType::Buddy);
    f.set(PageFlags::HEAD | PageFlags::DIRTY);
    assert_eq!(f.zone(), gfp::ZoneType::HighMem);
    assert_eq!(f.migratetype(), gfp::MigrateType::Reclaimable);
    assert_eq!(f.order(), Some(10));
    assert_eq!(f.page_type(), PageType::Buddy);
    assert_eq!(f.flags(), PageFlags::HEAD | PageFlags::DIRTY);
    f.clear(PageFlags::DIRTY);
    f.set_order(None);
    assert_eq!(f.flags(), PageFlags::HEAD);
    assert_eq!(f.order(), None);
    assert_eq!(f.zone(), gfp::ZoneType::HighMem);
    assert_eq!(f.put_ref(), 0);
    assert_eq!(f.get_ref(), 1);
    assert_eq!(f.put_ref(), 0);
}

#[test]
fn list_push_pop_remove() {
    let m = map();
    let mut l = FrameList::new();
    let ids: Vec<u32> = [1usize, 5, 33, 47]
        .iter()
        .map(|&p| m.index_of(Pfn(p)).unwrap())
        .collect();
    assert!(l.push_back(&m, ids[0]));
    assert!(l.push_back(&m, ids[1]));
    assert!(l.push_front(&m, ids[2]));
    assert!(l.push_back(&m, ids[3]));
    assert!(
        !l.push_back(&m, ids[3]),
        "a linked frame cannot be pushed again"
    );
    assert_eq!(
        l.iter(&m).collect::<Vec<_>>(),
        [ids[2], ids[0], ids[1], ids[3]]
    );
    assert!(l.remove(&m, ids[0]));
    assert!(!l.remove(&m, ids[0]));
    assert_eq!(l.iter(&m).collect::<Vec<_>>(), [ids[2], ids[1], ids[3]]);
    assert_eq!(l.pop_back(&m), Some(ids[3]));
    assert_eq!(l.pop_front(&m), Some(ids[2]));
    assert_eq!(l.pop_front(&m), Some(ids[1]));
    assert_eq!(l.pop_front(&m), None);
    assert!(l.is_empty());
}

#[test]
fn get_order_matches_linux() {
    assert_eq!(get_order(0), 0);
    assert_eq!(get_order(1), 0);
    assert_eq!(get_order(4096), 0);
    assert_eq!(get_order(4097), 1);
    assert_eq!(get_order(8192), 1);
    assert_eq!(get_order(8193), 2);
    assert_eq!(get_order(4 << 20), 10);
}

#[test]
fn pfn_arithmetic() {
    assert_eq!(Pfn(12).buddy(1), Pfn(14));
    assert_eq!(Pfn(14).buddy(1), Pfn(12));
    assert!(Pfn(12).is_aligned(2));
    assert!(!Pfn(12).is_aligned(3));
    assert_eq!(Pfn::containing(PhysAddr(0x5fff)), Pfn(5));
    assert_eq!(PhysAddr(0x5fff).page_offset(), 0xfff);
}

/// Physical memory for tests: a few boxed pages, lowmem below `high`.
#[repr(C, align(4096))]
struct AlignedPage([u8; PAGE_SIZE]);

struct BoxedPages {
    pages: alloc::vec::Vec<core::cell::UnsafeCell<AlignedPage>>,
    high: usize,
}

// SAFETY: the pages are only reached through `direct_map` pointers, whose
// users own the frames they touch (the `PhysMemory` contract).
unsafe impl Sync for BoxedPages {}

// SAFETY: 1. each pointer is to a distinct `PAGE_SIZE`-byte element of a
// vector that lives as long as `self`, aligned to `PAGE_SIZE` by
// `AlignedPage`'s `repr`; 2. elements do not overlap; 3. `BoxedPages` never
// touches the bytes itself.
unsafe impl PhysMemory for BoxedPages {
    fn direct_map(&self, pfn: Pfn) -> Option<core::ptr::NonNull<u8>> {
        if pfn.0 >= self.high {
            return None;
        }
        self.pages
            .get(pfn.0)
            .and_then(|c| core::ptr::NonNull::new(c.get().cast::<u8>()))
    }

    fn virt_to_pfn(&self, addr: usize) -> Option<Pfn> {
        (0..self.pages.len())
            .find(|&i| self.pages[i].get() as usize == addr)
            .map(Pfn)
    }

    fn has_memory(&self) -> bool {
        true
    }
}

fn boxed(n: usize, high: usize) -> BoxedPages {
    let pages = (0..n)
        .map(|_| core::cell::UnsafeCell::new(AlignedPage([0x5a; PAGE_SIZE])))
        .collect();
    BoxedPages { pages, high }
}

#[test]
fn default_clear_frames_zeroes_lowmem_and_refuses_highmem() {
    let mem = boxed(4, 3);
    // SAFETY: this test owns every frame of `mem`.
    assert!(unsafe { mem.clear_frames(Pfn(1), 2) });
    let p1 = mem.direct_map(Pfn(1)).unwrap();
    assert_eq!(mem.virt_to_pfn(p1.as_ptr() as usize), Some(Pfn(1)));
    // SAFETY: frame 1 is ours and valid for `PAGE_SIZE` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(p1.as_ptr(), PAGE_SIZE) };
    assert!(bytes.iter().all(|&b| b == 0));
    let p0 = mem.direct_map(Pfn(0)).unwrap();
    // SAFETY: frame 0 is ours and valid for `PAGE_SIZE` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(p0.as_ptr(), PAGE_SIZE) };
    assert!(
        bytes.iter().all(|&b| b == 0x5a),
        "frames outside the range are untouched"
    );
    // SAFETY: this test owns every frame of `mem`.
    let cleared = unsafe { mem.clear_frames(Pfn(2), 2) };
    assert!(!cleared, "frame 3 is highmem");
    assert!(mem.direct_map(Pfn(3)).is_none());
    // SAFETY: `NoMemory` has no bytes at all.
    assert!(!unsafe { NoMemory.clear_frames(Pfn(0), 1) });
}
