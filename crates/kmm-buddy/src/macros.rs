//! The `BuddyBackend` implementation shared by `EagerBuddy` and `LazyBuddy`:
//! both wrap a `Core`, so one macro writes both impls.

/// Implements `BuddyBackend` and `Debug` for a newtype over `Core<LAZY>`.
macro_rules! impl_buddy_backend {
    ($ty:ident, $name:literal) => {
        impl $ty {
            /// Runs `check_invariants` after an operation when the
            /// `debug-invariants` feature (or a unit test) asks for it.
            #[cfg(any(test, feature = "debug-invariants"))]
            #[inline]
            fn after_op(&self, op: &str) {
                if let Err(e) = self.inner.check_invariants() {
                    panic!("{} buddy: invariant broken after {op}: {e}", $name);
                }
            }

            #[cfg(not(any(test, feature = "debug-invariants")))]
            #[inline(always)]
            fn after_op(&self, _op: &str) {}
        }

        impl $crate::BuddyBackend for $ty {
            const NAME: &'static str = $name;

            fn new(map: ::alloc::sync::Arc<::kmm_page::MemMap>) -> Self {
                $ty {
                    inner: $crate::freearea::Core::new(map),
                }
            }

            fn mem_map(&self) -> &::alloc::sync::Arc<::kmm_page::MemMap> {
                &self.inner.map
            }

            fn add_free_range(
                &mut self,
                range: ::kmm_page::PfnRange,
            ) -> Result<(), ::kmm_page::PageError> {
                let r = self.inner.add_free_range(range);
                self.after_op("add_free_range");
                r
            }

            #[inline]
            fn alloc(
                &mut self,
                order: u32,
                mt: ::kmm_gfp::MigrateType,
            ) -> Result<::kmm_page::Pfn, ::kmm_page::PageError> {
                let r = self.inner.alloc(order, mt);
                self.after_op("alloc");
                r
            }

            #[inline]
            fn free(
                &mut self,
                pfn: ::kmm_page::Pfn,
                order: u32,
            ) -> Result<(), ::kmm_page::PageError> {
                let r = self.inner.free(pfn, order);
                self.after_op("free");
                r
            }

            fn split(
                &mut self,
                pfn: ::kmm_page::Pfn,
                order: u32,
            ) -> Result<(), ::kmm_page::PageError> {
                let r = self.inner.split(pfn, order);
                self.after_op("split");
                r
            }

            fn drain(&mut self) {
                self.inner.drain();
                self.after_op("drain");
            }

            fn nr_free(&self, order: u32) -> usize {
                self.inner.nr_free.get(order as usize).copied().unwrap_or(0)
            }

            fn nr_free_mt(&self, order: u32, mt: ::kmm_gfp::MigrateType) -> usize {
                self.inner.nr_free_mt(order, mt)
            }

            fn free_pages(&self) -> usize {
                self.inner.free_pages()
            }

            fn managed_pages(&self) -> usize {
                self.inner.managed
            }

            fn pageblock_counts(&self) -> [usize; ::kmm_gfp::MigrateType::COUNT] {
                self.inner.pb.counts()
            }

            fn stats(&self) -> &$crate::BuddyStats {
                &self.inner.stats
            }

            fn free_blocks(&self) -> ::alloc::vec::Vec<$crate::FreeBlock> {
                self.inner.free_blocks()
            }

            fn check_invariants(&self) -> Result<(), ::alloc::string::String> {
                self.inner.check_invariants()
            }

            fn free_exact(
                &mut self,
                pfn: ::kmm_page::Pfn,
                nr_pages: usize,
            ) -> Result<(), ::kmm_page::PageError> {
                let r = self.inner.free_exact(pfn, nr_pages);
                self.after_op("free_exact");
                r
            }
        }

        impl ::core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("map", &self.inner.map)
                    .field("managed_pages", &self.inner.managed)
                    .field("nr_free", &self.inner.nr_free)
                    .field("nr_locally_free", &self.inner.nr_local)
                    .field("nr_allocated", &self.inner.nr_alloc)
                    .finish_non_exhaustive()
            }
        }
    };
}
