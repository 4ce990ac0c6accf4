//! Unit tests of the host MMU's conversions: errno to `MmuError`, `Prot` to
//! host protection, and window offsets.

use std::sync::Arc;

use kmm_page::{Mmu, MmuError, PAGE_SIZE, Pfn, PfnRange, Prot, VirtAddr};
use rustix::io::Errno;
use rustix::mm::ProtFlags;

use super::{HostMmu, mmu_error, prot_flags};
use crate::HostMemory;

#[test]
fn enomem_is_the_map_count_and_other_errnos_pass_through() {
    assert_eq!(mmu_error(Errno::NOMEM), MmuError::MapCountExhausted);
    for errno in [Errno::INVAL, Errno::ACCESS, Errno::AGAIN, Errno::BADF] {
        assert_eq!(mmu_error(errno), MmuError::Host(errno.raw_os_error()));
    }
    assert_eq!(mmu_error(Errno::INVAL), MmuError::Host(22));
}

#[test]
fn prot_bits_become_host_protection() {
    assert_eq!(prot_flags(Prot::empty()), ProtFlags::empty());
    assert_eq!(prot_flags(Prot::KERNEL), ProtFlags::READ | ProtFlags::WRITE);
    assert_eq!(
        prot_flags(Prot::READ | Prot::EXEC),
        ProtFlags::READ | ProtFlags::EXEC
    );
    assert_eq!(
        prot_flags(Prot::all()),
        ProtFlags::READ | ProtFlags::WRITE | ProtFlags::EXEC
    );
}

#[test]
fn offsets_stay_inside_the_window() {
    let memory = Arc::new(HostMemory::new(&[PfnRange::new(0, 4)], Pfn(4)).unwrap());
    let mmu = HostMmu::with_window_size(memory, 4 * PAGE_SIZE).unwrap();
    let (start, end) = mmu.window();
    assert_eq!(end.0 - start.0, 4 * PAGE_SIZE);
    assert_eq!(mmu.offset(start, 4), Ok(0));
    assert_eq!(
        mmu.offset(VirtAddr(start.0 + 3 * PAGE_SIZE), 1),
        Ok(3 * PAGE_SIZE)
    );
    assert_eq!(mmu.offset(end, 0), Ok(4 * PAGE_SIZE));
    for (va, pages) in [
        (start, 5),
        (end, 1),
        (VirtAddr(start.0 - PAGE_SIZE), 1),
        (start, usize::MAX),
    ] {
        assert_eq!(mmu.offset(va, pages), Err(MmuError::OutsideWindow(va)));
    }
    let odd = VirtAddr(start.0 + 1);
    assert_eq!(mmu.offset(odd, 1), Err(MmuError::Misaligned(odd)));
}
