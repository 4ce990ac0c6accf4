//! Runs parsed commands on a machine booted through the `kmm` facade.
//!
//! A [`Session`] holds at most one machine and the names of its live allocations.
//! `boot` builds a new machine and replaces the old one only once the new one is up; every other
//! command checks its arguments (a free name, a known gfp) before it touches the machine, so a
//! failing command leaves both the machine and the names as they were.
//! The buddy backend is `kmm::DefaultBuddy` unless `boot` names one (`buddy=eager` or
//! `buddy=lazy`): built with `--features kmm/lazy-buddy`, the simulator runs on the lazy buddy.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use kmm::{
    Arch, Backing, BuddyBackend, EagerBuddy, FrameState, Gfp, KmemCache, KmmError, LazyBuddy,
    MachineConfig, MemoryManager, MemorySpec, PAGE_SIZE, PercpuPtr, Pfn, PfnRange, VirtAddr,
};
use thiserror::Error;

use crate::picture::{self, Frame, Kind};
use crate::runner::Execute;
use crate::script::{
    ArchArg, BackingArg, BootArgs, BuddyArg, Command, FreeTarget, HELP, MemoryArg,
};

/// Why a command failed on the machine.
#[derive(Debug, Error)]
pub(crate) enum ExecError {
    /// A machine command before the first `boot`.
    #[error("no machine yet: a script must boot first (e.g. 'boot mem=64M')")]
    NotBooted,
    /// A `gfp=` value the gfp parser refused.
    #[error("bad gfp '{text}': {reason}")]
    Gfp {
        /// The value as written.
        text: String,
        /// The parser's reason.
        reason: String,
    },
    /// A name that is still live.
    #[error("name '{0}' is in use: free it first or choose another name")]
    NameInUse(String),
    /// A name with no live allocation.
    #[error("no live allocation named '{0}'")]
    UnknownName(String),
    /// A name freed with the wrong command.
    #[error("'{name}' came from {allocated_by}: free it with {free_with}")]
    WrongFree {
        /// The name.
        name: String,
        /// The command that allocated it.
        allocated_by: &'static str,
        /// The command that frees it.
        free_with: &'static str,
    },
    /// `kmap` of a name that is no page allocation.
    #[error("'{0}' is not a page allocation: kmap maps the first frame of an alloc_pages result")]
    NotAPage(String),
    /// A command that writes to memory, on a machine without memory behind its frames.
    #[error("{0} needs memory behind the frames; this machine booted with backing=none")]
    NoMemory(&'static str),
    /// A cache name that is already taken.
    #[error("cache '{0}' exists: destroy it first or choose another name")]
    CacheExists(String),
    /// A cache name with no live cache.
    #[error("no cache named '{0}' (create it with kmem_cache_create)")]
    UnknownCache(String),
    /// A `cat` of a file the machine does not have.
    #[error("no such file: {0}")]
    NoSuchFile(String),
    /// The picture could not be written.
    #[error("cannot write picture {}: {source}", path.display())]
    Picture {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The memory manager refused.
    #[error(transparent)]
    Kmm(#[from] KmmError),
    /// Standard output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

/// What a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allocation {
    /// From `alloc_pages` or `get_zeroed_page`.
    Pages {
        /// The first frame.
        pfn: Pfn,
        /// The block's order.
        order: u32,
    },
    /// From `alloc_pages_exact`.
    Exact {
        /// The first frame.
        pfn: Pfn,
        /// The size asked for, in bytes.
        size: usize,
    },
    /// From `vmalloc` or `vzalloc`.
    Vmalloc {
        /// The first address of the area.
        addr: VirtAddr,
    },
    /// From `kmap`.
    Kmap {
        /// The frame mapped.
        pfn: Pfn,
    },
    /// From `kmap_atomic`.
    KmapAtomic {
        /// The address of the mapping.
        addr: VirtAddr,
    },
    /// From `alloc_percpu`.
    Percpu {
        /// The per-CPU pointer.
        ptr: PercpuPtr,
    },
    /// From `kmalloc` or `kzalloc`.
    Kmalloc {
        /// The object.
        ptr: NonNull<u8>,
    },
    /// From `kvmalloc` or `kvzalloc`: a kmalloc object or a vmalloc area.
    Kvmalloc {
        /// The block.
        ptr: NonNull<u8>,
    },
    /// From `kmem_cache_alloc`; the object's cache is found from its frame.
    CacheObject {
        /// The object.
        ptr: NonNull<u8>,
    },
}

impl Allocation {
    /// The command that made it and the one that releases it.
    fn commands(self) -> (&'static str, &'static str) {
        match self {
            Allocation::Pages { .. } => ("alloc_pages", "free_pages"),
            Allocation::Exact { .. } => ("alloc_pages_exact", "free_pages_exact"),
            Allocation::Vmalloc { .. } => ("vmalloc", "vfree"),
            Allocation::Kmap { .. } => ("kmap", "kunmap"),
            Allocation::KmapAtomic { .. } => ("kmap_atomic", "kunmap_atomic"),
            Allocation::Percpu { .. } => ("alloc_percpu", "free_percpu"),
            Allocation::Kmalloc { .. } => ("kmalloc", "kfree"),
            Allocation::Kvmalloc { .. } => ("kvmalloc", "kvfree"),
            Allocation::CacheObject { .. } => ("kmem_cache_alloc", "kmem_cache_free"),
        }
    }
}

/// How a machine was booted, for the boot line, the picture title and the summary.
#[derive(Debug, Clone, Copy)]
struct About {
    /// The architecture.
    arch: ArchArg,
    /// The number of CPUs.
    cpus: usize,
    /// Whether per-CPU page lists are on.
    pcp: bool,
    /// Whether frames have memory behind them.
    backing: BackingArg,
}

/// A booted machine with a given buddy backend, and the names of its live allocations.
struct Machine<B: BuddyBackend> {
    /// The memory manager.
    mm: MemoryManager<B>,
    /// How it was booted.
    about: About,
    /// Live allocations by name.
    names: BTreeMap<String, Allocation>,
    /// Slab caches made by `kmem_cache_create`, by name.
    caches: BTreeMap<String, KmemCache>,
}

impl<B: BuddyBackend> fmt::Debug for Machine<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("backend", &self.mm.backend_name())
            .field("about", &self.about)
            .field("names", &self.names)
            .field("caches", &self.caches.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A machine with either backend.
#[derive(Debug)]
enum AnyMachine {
    /// `buddy=eager`.
    Eager(Machine<EagerBuddy>),
    /// `buddy=lazy`.
    Lazy(Machine<LazyBuddy>),
}

/// The simulator's state: the current machine, if any.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// The machine the next commands run on.
    machine: Option<AnyMachine>,
}

impl Execute for Session {
    type Error = ExecError;

    fn execute(&mut self, command: &Command, out: &mut dyn Write) -> Result<(), ExecError> {
        match command {
            Command::Boot(args) => {
                let machine = boot(args)?;
                let machine = self.machine.insert(machine);
                match machine {
                    AnyMachine::Eager(machine) => machine.print_boot(out),
                    AnyMachine::Lazy(machine) => machine.print_boot(out),
                }
            }
            Command::Help => Ok(out.write_all(HELP.as_bytes())?),
            command => match &mut self.machine {
                None => Err(ExecError::NotBooted),
                Some(AnyMachine::Eager(machine)) => machine.execute(command, out),
                Some(AnyMachine::Lazy(machine)) => machine.execute(command, out),
            },
        }
    }
}

/// Boots the machine `args` describe.
fn boot(args: &BootArgs) -> Result<AnyMachine, ExecError> {
    let mut config = MachineConfig::default();
    let arch = args.arch.unwrap_or(ArchArg::X86_64);
    config.arch = match arch {
        ArchArg::X86_64 => Arch::X86_64,
        ArchArg::X86_32 => Arch::X86_32,
    };
    let toy = matches!(args.memory, MemoryArg::Toy { .. });
    match &args.memory {
        MemoryArg::Default => {}
        MemoryArg::Size(bytes) => config.memory = MemorySpec::Size(*bytes),
        MemoryArg::Toy { pages, free } => {
            let free = free.as_ref().map(|ranges| {
                ranges
                    .iter()
                    .map(|range| PfnRange::new(range.first, range.last + 1))
                    .collect()
            });
            config.memory = MemorySpec::Toy {
                pages: *pages,
                free,
            };
        }
    }
    if let Some(cpus) = args.cpus {
        config.cpus = cpus;
    }
    config.pcp = args.pcp;
    config.min_free_kbytes = args.min_free_kbytes;
    let backing = args.backing.unwrap_or(BackingArg::Host);
    config.backing = match backing {
        BackingArg::Host => Backing::Host,
        BackingArg::None => Backing::NoMemory,
    };
    let about = About {
        arch,
        cpus: config.cpus,
        pcp: args.pcp.unwrap_or(!toy),
        backing,
    };
    Ok(match args.buddy.unwrap_or_else(default_buddy) {
        BuddyArg::Eager => AnyMachine::Eager(Machine::boot(config, about)?),
        BuddyArg::Lazy => AnyMachine::Lazy(Machine::boot(config, about)?),
    })
}

/// The backend `kmm::DefaultBuddy` names: the one the cargo features chose.
fn default_buddy() -> BuddyArg {
    if <kmm::DefaultBuddy as BuddyBackend>::NAME == LazyBuddy::NAME {
        BuddyArg::Lazy
    } else {
        BuddyArg::Eager
    }
}

/// The error for releasing `name`, which `allocation` stands for, with the wrong command.
fn wrong_free(name: &str, allocation: Allocation) -> ExecError {
    let (allocated_by, free_with) = allocation.commands();
    ExecError::WrongFree {
        name: name.to_owned(),
        allocated_by,
        free_with,
    }
}

/// Parses a `gfp=` value; `GFP_KERNEL` when absent.
fn parse_gfp(text: Option<&str>) -> Result<Gfp, ExecError> {
    let text = text.unwrap_or("GFP_KERNEL");
    text.parse::<Gfp>().map_err(|reason| ExecError::Gfp {
        text: text.to_owned(),
        reason: reason.to_string(),
    })
}

/// Writes a byte count the short way: `64M`, `2G`, `64K`, or plain bytes.
fn short_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

impl<B: BuddyBackend> Machine<B> {
    /// Boots a memory manager with backend `B`.
    fn boot(config: MachineConfig, about: About) -> Result<Self, ExecError> {
        let mm = MemoryManager::<B>::boot(config)?;
        Ok(Machine {
            mm,
            about,
            names: BTreeMap::new(),
            caches: BTreeMap::new(),
        })
    }

    /// Runs one machine command.
    fn execute(&mut self, command: &Command, out: &mut dyn Write) -> Result<(), ExecError> {
        match command {
            // The session runs these itself.
            Command::Boot(_) | Command::Help => Ok(()),
            Command::AllocPages { name, order, gfp } => {
                self.check_name_free(name)?;
                let gfp = parse_gfp(gfp.as_deref())?;
                let pfn = self.mm.alloc_pages(gfp, *order)?;
                self.names
                    .insert(name.clone(), Allocation::Pages { pfn, order: *order });
                self.print_pages(out, name, pfn, *order)
            }
            Command::GetZeroedPage { name, gfp } => {
                self.check_name_free(name)?;
                // Refused here rather than by the allocator, which would take a page (and
                // count it) before finding there is nothing to zero.
                if self.about.backing == BackingArg::None {
                    return Err(ExecError::NoMemory("get_zeroed_page"));
                }
                let gfp = parse_gfp(gfp.as_deref())?;
                let pfn = self.mm.get_zeroed_page(gfp)?;
                self.names
                    .insert(name.clone(), Allocation::Pages { pfn, order: 0 });
                self.print_pages(out, name, pfn, 0)
            }
            Command::AllocPagesExact { name, size, gfp } => {
                self.check_name_free(name)?;
                let gfp = parse_gfp(gfp.as_deref())?;
                let pfn = self.mm.alloc_pages_exact(*size, gfp)?;
                self.names
                    .insert(name.clone(), Allocation::Exact { pfn, size: *size });
                let pages = size.div_ceil(PAGE_SIZE);
                writeln!(
                    out,
                    "{name}: pfn={pfn} pages={pages} zone={}",
                    self.zone_name(pfn)
                )?;
                Ok(())
            }
            Command::FreePages(FreeTarget::Name(name)) => match self.lookup(name)? {
                Allocation::Pages { pfn, order } => {
                    self.mm.free_pages(pfn, order)?;
                    self.names.remove(name);
                    Ok(())
                }
                other => Err(wrong_free(name, other)),
            },
            Command::FreePages(FreeTarget::Pfn { pfn, order }) => {
                let pfn = Pfn(*pfn);
                self.mm.free_pages(pfn, *order)?;
                let freed = Allocation::Pages { pfn, order: *order };
                self.names.retain(|_, allocation| *allocation != freed);
                Ok(())
            }
            Command::FreePagesExact { name } => match self.lookup(name)? {
                Allocation::Exact { pfn, size } => {
                    self.mm.free_pages_exact(pfn, size)?;
                    self.names.remove(name);
                    Ok(())
                }
                other => Err(wrong_free(name, other)),
            },
            Command::Vmalloc {
                name,
                size,
                gfp,
                zero,
            } => {
                self.check_name_free(name)?;
                let gfp = parse_gfp(gfp.as_deref())?;
                let addr = if *zero {
                    self.mm.vzalloc(*size, gfp)?
                } else {
                    self.mm.vmalloc(*size, gfp)?
                };
                self.names
                    .insert(name.clone(), Allocation::Vmalloc { addr });
                let pages = size.div_ceil(PAGE_SIZE);
                writeln!(
                    out,
                    "{name}: addr={addr:#x} size={} pages={pages}",
                    pages * PAGE_SIZE
                )?;
                Ok(())
            }
            Command::Vfree { name } => match self.lookup(name)? {
                Allocation::Vmalloc { addr } => {
                    self.mm.vfree(addr)?;
                    self.names.remove(name);
                    Ok(())
                }
                other => Err(wrong_free(name, other)),
            },
            Command::Kmap { name, page, atomic } => {
                self.check_name_free(name)?;
                let pfn = match self.lookup(page)? {
                    Allocation::Pages { pfn, .. } | Allocation::Exact { pfn, .. } => pfn,
                    _ => return Err(ExecError::NotAPage(page.clone())),
                };
                if *atomic {
                    let addr = self.mm.kmap_atomic(pfn)?;
                    self.names
                        .insert(name.clone(), Allocation::KmapAtomic { addr });
                    writeln!(out, "{name}: addr={addr:#x} pfn={pfn}")?;
                } else {
                    let addr = self.mm.kmap(pfn)?;
                    self.names.insert(name.clone(), Allocation::Kmap { pfn });
                    write!(
                        out,
                        "{name}: addr={addr:#x} pfn={pfn} zone={}",
                        self.zone_name(pfn)
                    )?;
                    if let Some(slot) = self.mm.highmem().pkmap_nr(addr) {
                        write!(out, " slot={slot}")?;
                    }
                    writeln!(out)?;
                }
                Ok(())
            }
            Command::Kunmap { name, atomic } => match (self.lookup(name)?, atomic) {
                (Allocation::Kmap { pfn }, false) => {
                    self.mm.kunmap(pfn)?;
                    self.names.remove(name);
                    Ok(())
                }
                (Allocation::KmapAtomic { addr }, true) => {
                    self.mm.kunmap_atomic(addr)?;
                    self.names.remove(name);
                    Ok(())
                }
                (other, _) => Err(wrong_free(name, other)),
            },
            Command::AllocPercpu { name, size, align } => {
                self.check_name_free(name)?;
                let ptr = self.mm.alloc_percpu(*size, *align)?;
                self.names.insert(name.clone(), Allocation::Percpu { ptr });
                let chunk = self
                    .mm
                    .percpu_chunk_of(ptr)
                    .map_or_else(|| "none".to_owned(), |c| c.to_string());
                writeln!(
                    out,
                    "{name}: ptr={:#x} size={size} align={align} chunk={chunk}",
                    ptr.addr()
                )?;
                Ok(())
            }
            Command::FreePercpu { name } => match self.lookup(name)? {
                Allocation::Percpu { ptr } => {
                    self.mm.free_percpu(ptr)?;
                    self.names.remove(name);
                    Ok(())
                }
                other => Err(wrong_free(name, other)),
            },
            Command::Kmalloc {
                name,
                size,
                gfp,
                zero,
            } => {
                let command = if *zero { "kzalloc" } else { "kmalloc" };
                self.check_name_free(name)?;
                self.check_slab(command)?;
                let gfp = parse_gfp(gfp.as_deref())?;
                let ptr = if *zero {
                    self.mm.kzalloc(*size, gfp)?
                } else {
                    self.mm.kmalloc(*size, gfp)?
                };
                self.names.insert(name.clone(), Allocation::Kmalloc { ptr });
                self.print_kmalloc(out, name, ptr)
            }
            Command::Kvmalloc {
                name,
                size,
                gfp,
                zero,
            } => {
                let command = if *zero { "kvzalloc" } else { "kvmalloc" };
                self.check_name_free(name)?;
                self.check_slab(command)?;
                let gfp = parse_gfp(gfp.as_deref())?;
                let ptr = if *zero {
                    self.mm.kvzalloc(*size, gfp)?
                } else {
                    self.mm.kvmalloc(*size, gfp)?
                };
                self.names
                    .insert(name.clone(), Allocation::Kvmalloc { ptr });
                let addr = VirtAddr(ptr.as_ptr().addr());
                if self.mm.is_vmalloc_addr(addr) {
                    let pages = size.div_ceil(PAGE_SIZE);
                    writeln!(out, "{name}: addr={addr:#x} vmalloc pages={pages}")?;
                    Ok(())
                } else {
                    self.print_kmalloc(out, name, ptr)
                }
            }
            Command::Kvfree { name } => match self.lookup(name)? {
                Allocation::Kvmalloc { ptr } => {
                    self.mm.kvfree(Some(ptr))?;
                    self.names.remove(name);
                    Ok(())
                }
                other => Err(wrong_free(name, other)),
            },
            Command::Kfree { name } => match self.lookup(name)? {
                Allocation::Kmalloc { ptr } => {
                    self.mm.kfree(Some(ptr))?;
                    self.names.remove(name);
                    Ok(())
                }
                other => Err(wrong_free(name, other)),
            },
            Command::KmemCacheCreate {
                cache,
                size,
                align,
                flags,
            } => {
                if self.caches.contains_key(cache) {
                    return Err(ExecError::CacheExists(cache.clone()));
                }
                self.check_slab("kmem_cache_create")?;
                let handle = self
                    .mm
                    .kmem_cache_create(cache, *size, *align, *flags, None)?;
                writeln!(
                    out,
                    "{cache}: cache={} objsize={} objperslab={} pagesperslab={}",
                    handle.name(),
                    handle.size(),
                    handle.objects_per_slab(),
                    1usize << handle.order()
                )?;
                self.caches.insert(cache.clone(), handle);
                Ok(())
            }
            Command::KmemCacheAlloc { name, cache } => {
                self.check_name_free(name)?;
                let handle = self.cache(cache)?;
                let ptr = self.mm.kmem_cache_alloc(handle, Gfp::KERNEL)?;
                self.names
                    .insert(name.clone(), Allocation::CacheObject { ptr });
                writeln!(out, "{name}: addr={:#x} cache={cache}", ptr.as_ptr().addr())?;
                Ok(())
            }
            Command::KmemCacheFree { name } => match self.lookup(name)? {
                Allocation::CacheObject { ptr } => {
                    let cache = self
                        .mm
                        .slab()
                        .and_then(|slab| slab.cache_of(ptr))
                        .ok_or_else(|| ExecError::UnknownName(name.clone()))?;
                    let handle = self.cache(&cache)?;
                    self.mm.kmem_cache_free(handle, ptr)?;
                    self.names.remove(name);
                    Ok(())
                }
                other => Err(wrong_free(name, other)),
            },
            Command::KmemCacheShrink { cache } => {
                let handle = self.cache(cache)?;
                self.mm.kmem_cache_shrink(handle)?;
                let row = self
                    .mm
                    .slab()
                    .and_then(|slab| slab.slabinfo_rows().into_iter().find(|r| r.name == *cache));
                let (slabs, pages) = row.map_or((0, 0), |r| (r.num_slabs, r.pages));
                writeln!(out, "{cache}: slabs={slabs} pages={pages}")?;
                Ok(())
            }
            Command::KmemCacheDestroy { cache } => {
                let handle = self.cache(cache)?;
                self.mm.kmem_cache_destroy(handle)?;
                self.caches.remove(cache);
                Ok(())
            }
            Command::Drain => {
                self.mm.drain_all_pages();
                Ok(())
            }
            Command::Cpu(cpu) => Ok(self.mm.set_cpu(*cpu)?),
            Command::Cat(path) => {
                let text = self
                    .mm
                    .proc(path)
                    .ok_or_else(|| ExecError::NoSuchFile(path.clone()))?;
                out.write_all(text.as_bytes())?;
                Ok(())
            }
            Command::Picture(path) => self.picture(path, out),
            Command::Summary => {
                let summary = self.mm.summary();
                writeln!(
                    out,
                    "summary: buddy={} pages={} free={} pcp={} allocated={} allocs={} failures={} splits={} merges={}",
                    self.mm.backend_name(),
                    summary.total_pages,
                    summary.free_pages,
                    summary.pcp_pages,
                    summary.allocated_pages,
                    summary.allocs,
                    summary.failures,
                    summary.splits,
                    summary.merges,
                )?;
                Ok(())
            }
        }
    }

    /// Refuses a name that is still live.
    fn check_name_free(&self, name: &str) -> Result<(), ExecError> {
        if self.names.contains_key(name) {
            Err(ExecError::NameInUse(name.to_owned()))
        } else {
            Ok(())
        }
    }

    /// Refuses a slab command on a machine without memory behind its frames.
    /// The line of a kmalloc object: its address, and its cache or, for a
    /// large kmalloc, its order.
    fn print_kmalloc(
        &self,
        out: &mut dyn Write,
        name: &str,
        ptr: NonNull<u8>,
    ) -> Result<(), ExecError> {
        write!(out, "{name}: addr={:#x}", ptr.as_ptr().addr())?;
        match self.mm.slab().and_then(|slab| slab.cache_of(ptr)) {
            Some(cache) => writeln!(out, " cache={cache}")?,
            None => {
                let bytes = self.mm.ksize(ptr)?;
                let order = (bytes / PAGE_SIZE).max(1).trailing_zeros();
                writeln!(out, " order={order}")?;
            }
        }
        Ok(())
    }

    fn check_slab(&self, command: &'static str) -> Result<(), ExecError> {
        if self.mm.slab().is_none() {
            Err(ExecError::NoMemory(command))
        } else {
            Ok(())
        }
    }

    /// The live cache called `name`.
    fn cache(&self, name: &str) -> Result<&KmemCache, ExecError> {
        self.caches
            .get(name)
            .ok_or_else(|| ExecError::UnknownCache(name.to_owned()))
    }

    /// The live allocation called `name`.
    fn lookup(&self, name: &str) -> Result<Allocation, ExecError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| ExecError::UnknownName(name.to_owned()))
    }

    /// The name of the zone `pfn` lies in.
    fn zone_name(&self, pfn: Pfn) -> &'static str {
        self.mm.zone_of(pfn).map_or("none", |zone| zone.name())
    }

    /// Prints the result line of a page allocation.
    fn print_pages(
        &self,
        out: &mut dyn Write,
        name: &str,
        pfn: Pfn,
        order: u32,
    ) -> Result<(), ExecError> {
        writeln!(
            out,
            "{name}: pfn={pfn} order={order} zone={}",
            self.zone_name(pfn)
        )?;
        Ok(())
    }

    /// Every frame's zone and state, in the picture's terms.
    fn frames(&self) -> Vec<Frame> {
        self.mm
            .frame_states()
            .into_iter()
            .map(|(_, zone, state)| Frame {
                zone: zone.map(|zone| zone.name()),
                kind: match state {
                    FrameState::Hole => Kind::Hole,
                    FrameState::Reserved => Kind::Reserved,
                    FrameState::Free { order } => Kind::Free(order),
                    FrameState::PerCpu => Kind::PerCpu,
                    FrameState::Allocated => Kind::Allocated,
                },
            })
            .collect()
    }

    /// Prints the boot line: the machine as booted and its zones.
    fn print_boot(&self, out: &mut dyn Write) -> Result<(), ExecError> {
        let frames = self.frames();
        let zones: Vec<String> = picture::zone_spans(&frames)
            .iter()
            .map(|span| format!("{}[{}-{}]", span.name, span.first, span.last))
            .collect();
        let about = self.about;
        writeln!(
            out,
            "boot: arch={} mem={} pages={} cpus={} pcp={} buddy={} backing={} zones={}",
            about.arch.name(),
            short_size(frames.len() as u64 * PAGE_SIZE as u64),
            frames.len(),
            about.cpus,
            if about.pcp { "on" } else { "off" },
            self.mm.backend_name(),
            match about.backing {
                BackingArg::Host => "host",
                BackingArg::None => "none",
            },
            zones.join(","),
        )?;
        Ok(())
    }

    /// Writes the picture of physical memory to `path`.
    fn picture(&self, path: &Path, out: &mut dyn Write) -> Result<(), ExecError> {
        let frames = self.frames();
        let about = self.about;
        let title = format!(
            "kmm-sim: {}, {} ({} frames), {} CPUs, pcp {}, {} buddy",
            about.arch.name(),
            short_size(frames.len() as u64 * PAGE_SIZE as u64),
            frames.len(),
            about.cpus,
            if about.pcp { "on" } else { "off" },
            self.mm.backend_name(),
        );
        let drawn = picture::render(&title, &frames);
        std::fs::write(path, &drawn.svg).map_err(|source| ExecError::Picture {
            path: path.to_path_buf(),
            source,
        })?;
        writeln!(
            out,
            "wrote picture {}: {} frames, {} cells of {} frame{}",
            path.display(),
            frames.len(),
            drawn.cells,
            drawn.frames_per_cell,
            if drawn.frames_per_cell == 1 { "" } else { "s" },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
