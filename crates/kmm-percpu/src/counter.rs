//! Integers that per-CPU counters are made of, with the wrap-around arithmetic of kernel counters.

/// An integer usable as a per-CPU counter by the `this_cpu_add` family and
/// [`PerCpu::sum`](crate::PerCpu::sum).
///
/// Arithmetic wraps, as it does for the kernel's `unsigned long` counters, so
/// a counter never panics on overflow; signed per-CPU deltas (like the
/// `vm_stat_diff` of `mm/vmstat.c`) go negative freely and sum back to the
/// right total.
pub trait Counter: Copy {
    /// The value zero.
    const ZERO: Self;
    /// The value one.
    const ONE: Self;
    /// `self + rhs`, wrapping on overflow.
    fn wrapping_add(self, rhs: Self) -> Self;
    /// `self - rhs`, wrapping on overflow.
    fn wrapping_sub(self, rhs: Self) -> Self;
}

macro_rules! impl_counter {
    ($($t:ty),*) => {$(
        impl Counter for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            fn wrapping_add(self, rhs: Self) -> Self {
                <$t>::wrapping_add(self, rhs)
            }
            fn wrapping_sub(self, rhs: Self) -> Self {
                <$t>::wrapping_sub(self, rhs)
            }
        }
    )*};
}

impl_counter!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);
