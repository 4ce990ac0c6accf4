//! Static per-CPU variables: the `StaticPercpu<T>` descriptor and the
//! `define_per_cpu!` macro, the model of `DEFINE_PER_CPU`
//! (`include/linux/percpu-defs.h`) over a [`PercpuAllocator`].
//!
//! In the kernel the linker gathers `DEFINE_PER_CPU` variables into the
//! `.data..percpu` section, and at boot `setup_per_cpu_areas` copies it into
//! every CPU's unit of the first chunk. Here the macro declares a `static`
//! descriptor (a name and a type, no storage), and a boot step registers it
//! with an allocator, which places it in the first chunk's static area.
//! An allocator keeps its own table of registered descriptors, so one
//! descriptor can be registered with several allocators (each test its own)
//! and sits at its own offset in each.

use core::fmt;
use core::marker::PhantomData;

use crate::{ChunkSource, CpuContext, PercpuAllocator, PercpuError, PercpuPtr, PercpuWord};

/// The descriptor of a static per-CPU variable of type `T`, declared with
/// [`define_per_cpu!`](crate::define_per_cpu) and placed with
/// [`PercpuAllocator::register_static`]. Every copy starts zeroed.
pub struct StaticPercpu<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> StaticPercpu<T> {
    /// A descriptor named `name`. Declare it as a `static` (the macro does):
    /// the allocator tells variables apart by the descriptor's address.
    pub const fn new(name: &'static str) -> StaticPercpu<T> {
        StaticPercpu {
            name,
            _type: PhantomData,
        }
    }

    /// The variable's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The key an allocator files the variable under: its address.
    pub(crate) fn key(&'static self) -> usize {
        core::ptr::from_ref(self).addr()
    }

    /// Places the variable in `alloc`'s static area (see
    /// [`PercpuAllocator::register_static`]).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::register_static`].
    pub fn register<S: ChunkSource>(
        &'static self,
        alloc: &PercpuAllocator<S>,
    ) -> Result<PercpuPtr, PercpuError> {
        alloc.register_static(self)
    }

    /// The variable's handle in `alloc` (`&name` of a `DEFINE_PER_CPU` variable).
    ///
    /// # Errors
    ///
    /// [`PercpuError::StaticNotRegistered`] if it is not registered with `alloc`.
    pub fn ptr<S: ChunkSource>(
        &'static self,
        alloc: &PercpuAllocator<S>,
    ) -> Result<PercpuPtr, PercpuError> {
        alloc.static_ptr(self)
    }
}

impl<T: PercpuWord> StaticPercpu<T> {
    /// CPU `cpu`'s copy (`per_cpu(name, cpu)`).
    ///
    /// # Errors
    ///
    /// As [`StaticPercpu::ptr`] and [`PercpuAllocator::per_cpu_read`].
    pub fn per_cpu<S: ChunkSource>(
        &'static self,
        alloc: &PercpuAllocator<S>,
        cpu: usize,
    ) -> Result<T, PercpuError> {
        alloc.per_cpu_read(self.ptr(alloc)?, cpu)
    }

    /// This CPU's copy (`this_cpu_read(name)`).
    ///
    /// # Errors
    ///
    /// As [`StaticPercpu::ptr`] and [`PercpuAllocator::this_cpu_read`].
    pub fn this_cpu_read<S: ChunkSource>(
        &'static self,
        alloc: &PercpuAllocator<S>,
        ctx: &dyn CpuContext,
    ) -> Result<T, PercpuError> {
        alloc.this_cpu_read(self.ptr(alloc)?, ctx)
    }

    /// Writes this CPU's copy (`this_cpu_write(name, value)`).
    ///
    /// # Errors
    ///
    /// As [`StaticPercpu::ptr`] and [`PercpuAllocator::this_cpu_write`].
    pub fn this_cpu_write<S: ChunkSource>(
        &'static self,
        alloc: &PercpuAllocator<S>,
        ctx: &dyn CpuContext,
        value: T,
    ) -> Result<(), PercpuError> {
        alloc.this_cpu_write(self.ptr(alloc)?, ctx, value)
    }

    /// Adds `delta` to this CPU's copy (`this_cpu_add(name, delta)`).
    ///
    /// # Errors
    ///
    /// As [`StaticPercpu::ptr`] and [`PercpuAllocator::this_cpu_add`].
    pub fn this_cpu_add<S: ChunkSource>(
        &'static self,
        alloc: &PercpuAllocator<S>,
        ctx: &dyn CpuContext,
        delta: T,
    ) -> Result<(), PercpuError> {
        alloc.this_cpu_add(self.ptr(alloc)?, ctx, delta)
    }

    /// The wrapping sum over every CPU's copy.
    ///
    /// # Errors
    ///
    /// As [`StaticPercpu::ptr`] and [`PercpuAllocator::per_cpu_sum`].
    pub fn sum<S: ChunkSource>(
        &'static self,
        alloc: &PercpuAllocator<S>,
    ) -> Result<T, PercpuError> {
        alloc.per_cpu_sum(self.ptr(alloc)?)
    }
}

impl<T> fmt::Debug for StaticPercpu<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticPercpu")
            .field("name", &self.name)
            .field("type", &core::any::type_name::<T>())
            .finish()
    }
}

/// Declares static per-CPU variables (`DEFINE_PER_CPU`,
/// `include/linux/percpu-defs.h`): each becomes a `static`
/// [`StaticPercpu`] descriptor, to be registered with an allocator at boot.
///
/// ```
/// use kmm_percpu::{FixedCpu, HeapChunks, PercpuAllocator, define_per_cpu};
///
/// define_per_cpu! {
///     /// Pages freed on each CPU.
///     static NR_FREED: u64;
///     static LAST_ORDER: u32;
/// }
///
/// let pcpu = PercpuAllocator::new(HeapChunks, 2, 64)?;
/// NR_FREED.register(&pcpu)?;
/// LAST_ORDER.register(&pcpu)?;
/// let cpu1 = FixedCpu::new(2);
/// cpu1.set_current(1).unwrap();
/// NR_FREED.this_cpu_add(&pcpu, &cpu1, 3)?;
/// assert_eq!(NR_FREED.per_cpu(&pcpu, 0)?, 0);
/// assert_eq!(NR_FREED.per_cpu(&pcpu, 1)?, 3);
/// # Ok::<(), kmm_percpu::PercpuError>(())
/// ```
#[macro_export]
macro_rules! define_per_cpu {
    ($($(#[$attr:meta])* $vis:vis static $name:ident : $ty:ty ;)*) => {$(
        $(#[$attr])*
        $vis static $name: $crate::StaticPercpu<$ty> = $crate::StaticPercpu::new(stringify!($name));
    )*};
}
