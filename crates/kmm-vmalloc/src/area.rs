//! The address-space bookkeeping: `vmap_area` nodes in intrusive red-black
//! trees keyed by start address, and first-fit allocation of free ranges.
//!
//! Three trees partition the space, as in `mm/vmalloc.c`: the busy areas
//! (`vmap_area_root`), the lazily freed areas that wait for a purge
//! (`purge_vmap_area_root`), and the free ranges (`free_vmap_area_root`),
//! which are kept merged so that no two free ranges touch.

use alloc::boxed::Box;
use alloc::vec::Vec;
use intrusive_collections::Bound;

use intrusive_collections::{KeyAdapter, RBTree, RBTreeLink, intrusive_adapter};
use kmm_page::Pfn;

/// What kind of mapping a busy area holds (the `VM_*` flags kmm models).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AreaKind {
    /// Pages vmalloc allocated and owns (`VM_ALLOC`).
    Vmalloc,
    /// Pages the caller gave to `vmap` and still owns (`VM_MAP`).
    Vmap,
}

/// The `vm_struct` of a busy area.
#[derive(Debug)]
pub(crate) struct VmStruct {
    /// `VM_ALLOC` or `VM_MAP`.
    pub(crate) kind: AreaKind,
    /// The frames mapped, one per page, lowest address first.
    pub(crate) pages: Vec<Pfn>,
    /// Unmapped guard pages below the mapped pages (1 for a vmap'ed stack).
    pub(crate) lead_guard: usize,
    /// The caller shown in `/proc/vmallocinfo`.
    pub(crate) caller: &'static str,
}

/// One range of the address space (`struct vmap_area`): `[start, end)` in
/// bytes, guard pages included.
#[derive(Debug)]
pub(crate) struct VmapArea {
    link: RBTreeLink,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// `Some` for busy areas, `None` for free ranges and lazily freed areas.
    pub(crate) vm: Option<VmStruct>,
}

impl VmapArea {
    /// A node for `[start, end)`.
    pub(crate) fn new(start: usize, end: usize, vm: Option<VmStruct>) -> Box<VmapArea> {
        Box::new(VmapArea {
            link: RBTreeLink::new(),
            start,
            end,
            vm,
        })
    }

    /// The size in bytes.
    pub(crate) fn size(&self) -> usize {
        self.end - self.start
    }
}

intrusive_adapter!(pub(crate) AreaAdapter = Box<VmapArea>: VmapArea { link => RBTreeLink });

impl<'a> KeyAdapter<'a> for AreaAdapter {
    type Key = usize;

    fn get_key(&self, area: &'a VmapArea) -> usize {
        area.start
    }
}

/// A tree of areas keyed by start address.
pub(crate) type AreaTree = RBTree<AreaAdapter>;

/// A new, empty tree.
pub(crate) fn new_tree() -> AreaTree {
    RBTree::new(AreaAdapter::new())
}

/// Takes the lowest free range of at least `size` bytes (first fit from the
/// lowest address, as `__alloc_vmap_area` does) and returns its start; the
/// rest of the range stays free.
pub(crate) fn alloc_range(free: &mut AreaTree, size: usize) -> Option<usize> {
    let start = free.iter().find(|r| r.size() >= size)?.start;
    let mut node = free.find_mut(&start).remove()?;
    if node.size() > size {
        node.start += size;
        free.insert(node);
    }
    Some(start)
}

/// Gives `[start, end)` back to the free ranges, merging it with the
/// neighbours it touches (`merge_or_add_vmap_area`).
pub(crate) fn free_range(free: &mut AreaTree, mut node: Box<VmapArea>) {
    node.vm = None;
    let mut below = free.upper_bound_mut(Bound::Excluded(&node.start));
    if below.get().is_some_and(|b| b.end == node.start)
        && let Some(b) = below.remove()
    {
        node.start = b.start;
    }
    let mut above = free.find_mut(&node.end);
    if let Some(a) = above.remove() {
        node.end = a.end;
    }
    free.insert(node);
}
