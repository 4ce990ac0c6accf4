//! `PreemptGuard`: a preemption-disabled section that ends when the guard drops.

use core::fmt;
use core::marker::PhantomData;

use crate::CpuContext;

/// Preemption disabled on a [`CpuContext`] until the guard drops: the
/// `get_cpu()`/`put_cpu()` pair of `include/linux/smp.h`, built on
/// `preempt_disable`/`preempt_enable` (`include/linux/preempt.h`).
///
/// While the guard lives the caller stays on [`PreemptGuard::cpu`]. The guard
/// is neither `Send` nor `Sync`: preemption is a property of the thread that
/// disabled it, so it must be re-enabled by that same thread.
#[must_use = "preemption is re-enabled as soon as the guard is dropped"]
pub struct PreemptGuard<'a> {
    ctx: &'a dyn CpuContext,
    cpu: usize,
    _not_send: PhantomData<*const ()>,
}

impl<'a> PreemptGuard<'a> {
    /// Disables preemption on `ctx` and records the CPU the caller now stays on.
    #[doc(alias = "get_cpu")]
    #[doc(alias = "preempt_disable")]
    pub fn new(ctx: &'a dyn CpuContext) -> PreemptGuard<'a> {
        ctx.preempt_disable();
        let cpu = ctx.current_cpu();
        PreemptGuard {
            ctx,
            cpu,
            _not_send: PhantomData,
        }
    }

    /// The CPU the caller stays on while the guard lives (`smp_processor_id`).
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for PreemptGuard<'_> {
    fn drop(&mut self) {
        self.ctx.preempt_enable();
    }
}

impl fmt::Debug for PreemptGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreemptGuard")
            .field("cpu", &self.cpu)
            .finish_non_exhaustive()
    }
}
