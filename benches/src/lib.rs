//! Shared workloads for the criterion benches: a fixed-seed random source and
//! the allocators under test, built the same way for every bench.

use std::sync::Arc;

use kmm_buddy::BuddyBackend;
use kmm_page::{MemMap, NoMemory, PfnRange};
use kmm_percpu::FixedCpu;
use kmm_zone::{MachineLayout, ZonedAllocator, ZonedConfig};

/// Frames managed by every buddy bench (256 MiB of 4 KiB frames).
pub const FRAMES: usize = 1 << 16;

/// A small, fast, fixed-seed generator (xorshift64*), so every backend sees
/// the same sequence of requests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with the benches' fixed seed.
    pub fn new() -> Rng {
        Rng(0x9e37_79b9_7f4a_7c15)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n < 2^32`), by multiply-and-shift rather than a
    /// division, so that the harness's own cost stays small next to the
    /// allocator's.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

/// A bare buddy backend over [`FRAMES`] frames, all free.
pub fn bare_buddy<B: BuddyBackend>() -> B {
    let map = Arc::new(MemMap::new(&[PfnRange::new(0, FRAMES)]).expect("map"));
    let mut b = B::new(map);
    b.add_free_range(PfnRange::new(0, FRAMES))
        .expect("free range");
    b
}

/// A zoned allocator over one Normal zone of [`FRAMES`] frames on one CPU,
/// with or without per-CPU page lists, and watermarks at 0.
pub fn zoned<B: BuddyBackend>(pcp: bool) -> ZonedAllocator<B> {
    let cfg = ZonedConfig {
        layout: MachineLayout::toy(FRAMES, None),
        pcp,
        min_free_kbytes: None,
    };
    let cpus = Arc::new(FixedCpu::new(1));
    ZonedAllocator::new(cfg, cpus, Arc::new(NoMemory)).expect("zoned allocator")
}
