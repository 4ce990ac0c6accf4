//! The scenario script language: one command a line, `#` comments, `key=value` arguments.
//!
//! This module only reads text.
//! It turns one line into a [`Command`], checking the shape of every argument (numbers, sizes,
//! pfn lists, names, which keys a command takes), and knows nothing of the machine that will run
//! the command: whether a name is live or a gfp name exists is the executor's business.

use std::path::PathBuf;

use kmm::SlabFlags;
use thiserror::Error;

/// One line of the command summary printed by `help`, in the order of `DESIGN.md`.
pub(crate) const HELP: &str = "\
commands (one a line, '#' starts a comment):
  boot [mem=64M|2G|BYTES] [pages=N] [free=5,10,12-15] [cpus=N] [arch=x86_64|x86_32]
       [pcp=on|off] [min_free_kbytes=N] [backing=host|none] [buddy=eager|lazy]
  alloc_pages NAME order=N [gfp=GFP_KERNEL]
  free_pages NAME            free_pages pfn=N order=K
  get_zeroed_page NAME [gfp=GFP_KERNEL]
  alloc_pages_exact NAME size=BYTES [gfp=GFP_KERNEL]
  free_pages_exact NAME
  drain                      drain_all_pages (the lazy buddy also coalesces)
  cpu N                      run the next commands on CPU N
  vmalloc NAME SIZE [gfp=GFP_KERNEL]     vzalloc NAME SIZE [gfp=...]     vfree NAME
  kmap NAME PAGE             kunmap NAME    (PAGE names a live alloc_pages result)
  kmap_atomic NAME PAGE      kunmap_atomic NAME   (newest first)
  alloc_percpu NAME size=BYTES [align=8]     free_percpu NAME
  kmalloc NAME SIZE [gfp=GFP_KERNEL]     kzalloc NAME SIZE [gfp=...]     kfree NAME
  kvmalloc NAME SIZE [gfp=GFP_KERNEL]    kvzalloc NAME SIZE [gfp=...]    kvfree NAME
  kmem_cache_create CACHE size=BYTES [align=N] [flags=SLAB_HWCACHE_ALIGN|...]
  kmem_cache_alloc NAME CACHE            kmem_cache_free NAME
  kmem_cache_shrink CACHE                kmem_cache_destroy CACHE
  cat /proc/buddyinfo|/proc/pagetypeinfo|/proc/zoneinfo|/proc/meminfo|/proc/vmallocinfo
      |/proc/slabinfo
  picture FILE.svg           write a picture of physical memory now
  summary
  help
";

/// The commands of later issues: known words that do not run yet.
const NOT_YET: &[&str] = &["kcalloc", "krealloc", "kmap_local_page", "kunmap_local"];

/// A parsed script command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `boot ...`: build a machine, replacing the current one.
    Boot(BootArgs),
    /// `alloc_pages NAME order=N [gfp=...]`.
    AllocPages {
        /// The name the allocation gets.
        name: String,
        /// The buddy order.
        order: u32,
        /// The gfp text, or `None` for `GFP_KERNEL`.
        gfp: Option<String>,
    },
    /// `free_pages NAME` or `free_pages pfn=N order=K`.
    FreePages(FreeTarget),
    /// `get_zeroed_page NAME [gfp=...]`.
    GetZeroedPage {
        /// The name the page gets.
        name: String,
        /// The gfp text, or `None` for `GFP_KERNEL`.
        gfp: Option<String>,
    },
    /// `alloc_pages_exact NAME size=BYTES [gfp=...]`.
    AllocPagesExact {
        /// The name the allocation gets.
        name: String,
        /// The size in bytes.
        size: usize,
        /// The gfp text, or `None` for `GFP_KERNEL`.
        gfp: Option<String>,
    },
    /// `free_pages_exact NAME`.
    FreePagesExact {
        /// The name of an `alloc_pages_exact` allocation.
        name: String,
    },
    /// `vmalloc NAME SIZE [gfp=...]` or `vzalloc NAME SIZE [gfp=...]`.
    Vmalloc {
        /// The name the area gets.
        name: String,
        /// The size in bytes.
        size: usize,
        /// The gfp text, or `None` for `GFP_KERNEL`.
        gfp: Option<String>,
        /// `vzalloc`: the memory is zeroed.
        zero: bool,
    },
    /// `vfree NAME`.
    Vfree {
        /// The name of a vmalloc area.
        name: String,
    },
    /// `kmap NAME PAGE` or `kmap_atomic NAME PAGE`.
    Kmap {
        /// The name the mapping gets.
        name: String,
        /// The name of the page allocation to map (its first frame).
        page: String,
        /// `kmap_atomic`: a per-CPU slot, released newest first.
        atomic: bool,
    },
    /// `kunmap NAME` or `kunmap_atomic NAME`.
    Kunmap {
        /// The name of the mapping.
        name: String,
        /// `kunmap_atomic`.
        atomic: bool,
    },
    /// `alloc_percpu NAME size=BYTES [align=N]`.
    AllocPercpu {
        /// The name the allocation gets.
        name: String,
        /// The size in bytes.
        size: usize,
        /// The alignment in bytes (8 unless given).
        align: usize,
    },
    /// `free_percpu NAME`.
    FreePercpu {
        /// The name of a per-CPU allocation.
        name: String,
    },
    /// `kmalloc NAME SIZE [gfp=...]` or `kzalloc NAME SIZE [gfp=...]`.
    Kmalloc {
        /// The name the allocation gets.
        name: String,
        /// The size in bytes.
        size: usize,
        /// The gfp text, or `None` for `GFP_KERNEL`.
        gfp: Option<String>,
        /// `kzalloc`: the memory is zeroed.
        zero: bool,
    },
    /// `kfree NAME`.
    Kfree {
        /// The name of a kmalloc allocation.
        name: String,
    },
    /// `kvmalloc NAME SIZE [gfp=...]` or `kvzalloc NAME SIZE [gfp=...]`.
    Kvmalloc {
        /// The name the allocation gets.
        name: String,
        /// The size in bytes.
        size: usize,
        /// The gfp text, or `None` for `GFP_KERNEL`.
        gfp: Option<String>,
        /// `kvzalloc`: the memory is zeroed.
        zero: bool,
    },
    /// `kvfree NAME`.
    Kvfree {
        /// The name of a kvmalloc allocation.
        name: String,
    },
    /// `kmem_cache_create CACHE size=BYTES [align=N] [flags=A|B]`.
    KmemCacheCreate {
        /// The cache name.
        cache: String,
        /// The object size in bytes.
        size: usize,
        /// The alignment (0, the default, unless given).
        align: usize,
        /// The flags.
        flags: SlabFlags,
    },
    /// `kmem_cache_alloc NAME CACHE`.
    KmemCacheAlloc {
        /// The name the object gets.
        name: String,
        /// The cache it comes from.
        cache: String,
    },
    /// `kmem_cache_free NAME`.
    KmemCacheFree {
        /// The name of a cache object.
        name: String,
    },
    /// `kmem_cache_shrink CACHE`.
    KmemCacheShrink {
        /// The cache.
        cache: String,
    },
    /// `kmem_cache_destroy CACHE`.
    KmemCacheDestroy {
        /// The cache.
        cache: String,
    },
    /// `drain`: `drain_all_pages`.
    Drain,
    /// `cpu N`: run the next commands on CPU `N`.
    Cpu(usize),
    /// `cat PATH`: print a `/proc` file.
    Cat(String),
    /// `picture FILE.svg`: write the picture of physical memory.
    Picture(PathBuf),
    /// `summary`: one line of counters.
    Summary,
    /// `help`: the command summary.
    Help,
}

/// What `free_pages` frees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FreeTarget {
    /// A live allocation by name.
    Name(String),
    /// A block given by its first frame and order.
    Pfn {
        /// The first frame of the block.
        pfn: usize,
        /// The block's order.
        order: u32,
    },
}

/// The arguments of `boot`; `None` means the machine's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BootArgs {
    /// How much memory, and in which shape.
    pub(crate) memory: MemoryArg,
    /// `cpus=`.
    pub(crate) cpus: Option<usize>,
    /// `arch=`.
    pub(crate) arch: Option<ArchArg>,
    /// `pcp=on|off`.
    pub(crate) pcp: Option<bool>,
    /// `min_free_kbytes=`.
    pub(crate) min_free_kbytes: Option<usize>,
    /// `backing=host|none`.
    pub(crate) backing: Option<BackingArg>,
    /// `buddy=eager|lazy`.
    pub(crate) buddy: Option<BuddyArg>,
}

/// The memory of a machine to boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum MemoryArg {
    /// Neither `mem=` nor `pages=`: the default size.
    #[default]
    Default,
    /// `mem=SIZE`: a machine of that many bytes, zones laid out as on x86.
    Size(u64),
    /// `pages=N [free=...]`: a toy machine of one Normal zone.
    Toy {
        /// The number of frames.
        pages: usize,
        /// The frames handed to the buddy, as inclusive ranges; `None` hands over all of them.
        free: Option<Vec<InclusiveRange>>,
    },
}

/// An inclusive range of frame numbers, as written in `free=12-15`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InclusiveRange {
    /// The first frame.
    pub(crate) first: usize,
    /// The last frame (included).
    pub(crate) last: usize,
}

/// `arch=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchArg {
    /// `x86_64`: DMA, DMA32 and Normal zones.
    X86_64,
    /// `x86_32`: DMA, Normal up to 896 MiB, HighMem above.
    X86_32,
}

impl ArchArg {
    /// The name as written in scripts.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ArchArg::X86_64 => "x86_64",
            ArchArg::X86_32 => "x86_32",
        }
    }
}

/// `backing=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackingArg {
    /// Real memory (a memfd on the host).
    Host,
    /// Frame numbers only.
    None,
}

/// `buddy=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuddyArg {
    /// `EagerBuddy`: merge on every free.
    Eager,
    /// `LazyBuddy`: merging deferred, coalesced on demand and on `drain`.
    Lazy,
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ParseError {
    /// The first word is no command at all.
    #[error("unknown command '{0}' (try 'help')")]
    UnknownCommand(String),
    /// The first word is a command of a later issue.
    #[error("'{0}' is not available yet")]
    NotAvailableYet(String),
    /// A command that names its result got no name.
    #[error("'{command}' needs a name first, as in '{command} A ...'")]
    MissingName {
        /// The command word.
        command: &'static str,
    },
    /// A name with characters that names may not have.
    #[error(
        "bad name '{0}': a name starts with a letter or '_' and has only letters, digits and '_'"
    )]
    BadName(String),
    /// A command that takes a positional argument got none.
    #[error("'{command}' needs {what}")]
    MissingArgument {
        /// The command word.
        command: &'static str,
        /// What is missing, in words.
        what: &'static str,
    },
    /// A token the command does not take.
    #[error("'{command}' does not take '{token}'")]
    UnexpectedArgument {
        /// The command word.
        command: &'static str,
        /// The extra token.
        token: String,
    },
    /// A `key=value` token with a key the command does not know.
    #[error("'{command}' has no key '{key}' (it takes: {allowed})")]
    UnknownKey {
        /// The command word.
        command: &'static str,
        /// The unknown key.
        key: String,
        /// The keys it takes, in words.
        allowed: String,
    },
    /// The same key twice.
    #[error("'{key}=' is given twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A required key is absent.
    #[error("'{command}' needs {key}=")]
    MissingKey {
        /// The command word.
        command: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// A token that should be `key=value` is not.
    #[error("expected key=value, found '{0}'")]
    NotKeyValue(String),
    /// A value of the wrong shape.
    #[error("bad value '{value}' for {key}=: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two keys that cannot go together.
    #[error("'{command}': {first}= and {second}= exclude each other")]
    Conflict {
        /// The command word.
        command: &'static str,
        /// The first key.
        first: &'static str,
        /// The second key.
        second: &'static str,
    },
    /// A key that only makes sense with another one.
    #[error("'{command}': {key}= needs {needs}=")]
    Requires {
        /// The command word.
        command: &'static str,
        /// The key given.
        key: &'static str,
        /// The key it needs.
        needs: &'static str,
    },
}

/// Parses one line; `Ok(None)` for a blank line or a comment.
pub(crate) fn parse_line(line: &str) -> Result<Option<Command>, ParseError> {
    let code = match line.find('#') {
        Some(hash) => &line[..hash],
        None => line,
    };
    let mut tokens = code.split_whitespace();
    let Some(word) = tokens.next() else {
        return Ok(None);
    };
    let rest: Vec<&str> = tokens.collect();
    let command = match word {
        "boot" => Command::Boot(parse_boot(&rest)?),
        "alloc_pages" => {
            let (name, mut args) = named("alloc_pages", &rest, &["order", "gfp"])?;
            let order = args.required("order", parse_order)?;
            let gfp = args.text("gfp");
            Command::AllocPages { name, order, gfp }
        }
        "free_pages" => Command::FreePages(parse_free_pages(&rest)?),
        "get_zeroed_page" => {
            let (name, mut args) = named("get_zeroed_page", &rest, &["gfp"])?;
            let gfp = args.text("gfp");
            Command::GetZeroedPage { name, gfp }
        }
        "alloc_pages_exact" => {
            let (name, mut args) = named("alloc_pages_exact", &rest, &["size", "gfp"])?;
            let size = args.required("size", |text| {
                let bytes = parse_size(text)?;
                usize::try_from(bytes).map_err(|_| "too large for this host".to_owned())
            })?;
            let gfp = args.text("gfp");
            Command::AllocPagesExact { name, size, gfp }
        }
        "free_pages_exact" => {
            let (name, _) = named("free_pages_exact", &rest, &[])?;
            Command::FreePagesExact { name }
        }
        word @ ("vmalloc" | "vzalloc") => {
            let command = if word == "vmalloc" {
                "vmalloc"
            } else {
                "vzalloc"
            };
            let (name, size, gfp) = sized(command, &rest, "a size, as in 'vmalloc E 40000'")?;
            Command::Vmalloc {
                name,
                size,
                gfp,
                zero: command == "vzalloc",
            }
        }
        "vfree" => {
            let (name, _) = named("vfree", &rest, &[])?;
            Command::Vfree { name }
        }
        word @ ("kmap" | "kmap_atomic") => {
            let atomic = word == "kmap_atomic";
            let command = if atomic { "kmap_atomic" } else { "kmap" };
            let (name, page, _) = named_with(
                command,
                &rest,
                "the name of a page allocation, as in 'kmap F A'",
                &[],
            )?;
            check_name(page)?;
            Command::Kmap {
                name,
                page: page.to_owned(),
                atomic,
            }
        }
        word @ ("kunmap" | "kunmap_atomic") => {
            let atomic = word == "kunmap_atomic";
            let (name, _) = named(if atomic { "kunmap_atomic" } else { "kunmap" }, &rest, &[])?;
            Command::Kunmap { name, atomic }
        }
        "alloc_percpu" => {
            let (name, mut args) = named("alloc_percpu", &rest, &["size", "align"])?;
            let size = args.required("size", parse_number)?;
            let align = args.optional("align", parse_number)?.unwrap_or(8);
            Command::AllocPercpu { name, size, align }
        }
        "free_percpu" => {
            let (name, _) = named("free_percpu", &rest, &[])?;
            Command::FreePercpu { name }
        }
        word @ ("kmalloc" | "kzalloc") => {
            let zero = word == "kzalloc";
            let command = if zero { "kzalloc" } else { "kmalloc" };
            let (name, size, gfp) = sized(command, &rest, "a size, as in 'kmalloc K 100'")?;
            Command::Kmalloc {
                name,
                size,
                gfp,
                zero,
            }
        }
        "kfree" => {
            let (name, _) = named("kfree", &rest, &[])?;
            Command::Kfree { name }
        }
        word @ ("kvmalloc" | "kvzalloc") => {
            let zero = word == "kvzalloc";
            let command = if zero { "kvzalloc" } else { "kvmalloc" };
            let (name, size, gfp) = sized(command, &rest, "a size, as in 'kvmalloc K 100000'")?;
            Command::Kvmalloc {
                name,
                size,
                gfp,
                zero,
            }
        }
        "kvfree" => {
            let (name, _) = named("kvfree", &rest, &[])?;
            Command::Kvfree { name }
        }
        "kmem_cache_create" => {
            let (cache, mut args) = named("kmem_cache_create", &rest, &["size", "align", "flags"])?;
            let size = args.required("size", |text| {
                let bytes = parse_size(text)?;
                usize::try_from(bytes).map_err(|_| "too large for this host".to_owned())
            })?;
            let align = args.optional("align", parse_number)?.unwrap_or(0);
            let flags = args
                .optional("flags", |text| {
                    text.parse::<SlabFlags>().map_err(|e| e.to_string())
                })?
                .unwrap_or(SlabFlags::empty());
            Command::KmemCacheCreate {
                cache,
                size,
                align,
                flags,
            }
        }
        "kmem_cache_alloc" => {
            let (name, cache, _) = named_with(
                "kmem_cache_alloc",
                &rest,
                "a cache, as in 'kmem_cache_alloc O inode_cache'",
                &[],
            )?;
            check_name(cache)?;
            Command::KmemCacheAlloc {
                name,
                cache: cache.to_owned(),
            }
        }
        "kmem_cache_free" => {
            let (name, _) = named("kmem_cache_free", &rest, &[])?;
            Command::KmemCacheFree { name }
        }
        word @ ("kmem_cache_shrink" | "kmem_cache_destroy") => {
            let destroy = word == "kmem_cache_destroy";
            let command = if destroy {
                "kmem_cache_destroy"
            } else {
                "kmem_cache_shrink"
            };
            let cache = one_argument(command, &rest, "a cache name")?;
            check_name(cache)?;
            let cache = cache.to_owned();
            if destroy {
                Command::KmemCacheDestroy { cache }
            } else {
                Command::KmemCacheShrink { cache }
            }
        }
        "drain" => {
            no_arguments("drain", &rest)?;
            Command::Drain
        }
        "cpu" => {
            let text = one_argument("cpu", &rest, "a CPU number, as in 'cpu 1'")?;
            let cpu = parse_number(text).map_err(|reason| ParseError::BadValue {
                key: "cpu",
                value: text.to_owned(),
                reason,
            })?;
            Command::Cpu(cpu)
        }
        "cat" => {
            let path = one_argument("cat", &rest, "a file, as in 'cat /proc/buddyinfo'")?;
            Command::Cat(path.to_owned())
        }
        "picture" => {
            let path = one_argument("picture", &rest, "a file, as in 'picture memory.svg'")?;
            Command::Picture(PathBuf::from(path))
        }
        "summary" => {
            no_arguments("summary", &rest)?;
            Command::Summary
        }
        "help" => {
            no_arguments("help", &rest)?;
            Command::Help
        }
        other if NOT_YET.contains(&other) => {
            return Err(ParseError::NotAvailableYet(other.to_owned()));
        }
        other => return Err(ParseError::UnknownCommand(other.to_owned())),
    };
    Ok(Some(command))
}

/// Parses the arguments of `boot`.
fn parse_boot(tokens: &[&str]) -> Result<BootArgs, ParseError> {
    const KEYS: &[&str] = &[
        "mem",
        "pages",
        "free",
        "cpus",
        "arch",
        "pcp",
        "min_free_kbytes",
        "backing",
        "buddy",
    ];
    let mut args = KeyValues::parse("boot", tokens, KEYS)?;
    let mem = args.optional("mem", parse_size)?;
    let pages = args.optional("pages", parse_number)?;
    let free = args.optional("free", parse_pfn_list)?;
    let memory = match (mem, pages, free) {
        (Some(_), Some(_), _) => {
            return Err(ParseError::Conflict {
                command: "boot",
                first: "mem",
                second: "pages",
            });
        }
        (_, None, Some(_)) => {
            return Err(ParseError::Requires {
                command: "boot",
                key: "free",
                needs: "pages",
            });
        }
        (Some(bytes), None, None) => MemoryArg::Size(bytes),
        (None, Some(pages), free) => {
            if pages == 0 {
                return Err(ParseError::BadValue {
                    key: "pages",
                    value: "0".to_owned(),
                    reason: "a machine needs at least one frame".to_owned(),
                });
            }
            if let Some(outside) = free.iter().flatten().find(|range| range.last >= pages) {
                return Err(ParseError::BadValue {
                    key: "free",
                    value: format_range(*outside),
                    reason: format!("the machine has frames 0-{} only", pages - 1),
                });
            }
            MemoryArg::Toy { pages, free }
        }
        (None, None, None) => MemoryArg::Default,
    };
    let cpus = args.optional("cpus", parse_number)?;
    let arch = args.optional("arch", |text| match text {
        "x86_64" => Ok(ArchArg::X86_64),
        "x86_32" | "i386" => Ok(ArchArg::X86_32),
        _ => Err("expected x86_64 or x86_32".to_owned()),
    })?;
    let pcp = args.optional("pcp", parse_on_off)?;
    let min_free_kbytes = args.optional("min_free_kbytes", parse_number)?;
    let backing = args.optional("backing", |text| match text {
        "host" => Ok(BackingArg::Host),
        "none" => Ok(BackingArg::None),
        _ => Err("expected host or none".to_owned()),
    })?;
    let buddy = args.optional("buddy", |text| match text {
        "eager" => Ok(BuddyArg::Eager),
        "lazy" => Ok(BuddyArg::Lazy),
        _ => Err("expected eager or lazy".to_owned()),
    })?;
    Ok(BootArgs {
        memory,
        cpus,
        arch,
        pcp,
        min_free_kbytes,
        backing,
        buddy,
    })
}

/// Parses the two forms of `free_pages`.
fn parse_free_pages(tokens: &[&str]) -> Result<FreeTarget, ParseError> {
    match tokens.first() {
        Some(first) if !first.contains('=') => {
            let (name, _) = named("free_pages", tokens, &[])?;
            Ok(FreeTarget::Name(name))
        }
        Some(_) => {
            let mut args = KeyValues::parse("free_pages", tokens, &["pfn", "order"])?;
            let pfn = args.required("pfn", parse_number)?;
            let order = args.required("order", parse_order)?;
            Ok(FreeTarget::Pfn { pfn, order })
        }
        None => Err(ParseError::MissingArgument {
            command: "free_pages",
            what: "a name, or pfn= and order=",
        }),
    }
}

/// Splits `NAME key=value...` and checks the name and the keys.
fn named<'a>(
    command: &'static str,
    tokens: &[&'a str],
    keys: &[&'static str],
) -> Result<(String, KeyValues<'a>), ParseError> {
    let Some((&name, rest)) = tokens.split_first() else {
        return Err(ParseError::MissingName { command });
    };
    if name.contains('=') {
        return Err(ParseError::MissingName { command });
    }
    check_name(name)?;
    let args = KeyValues::parse(command, rest, keys)?;
    Ok((name.to_owned(), args))
}

/// Splits `NAME POSITIONAL key=value...` and checks the name and the keys.
/// `COMMAND NAME SIZE [gfp=...]`, the form of the sized allocations: the
/// name, the size in bytes and the gfp text (`None` for the default).
fn sized(
    command: &'static str,
    tokens: &[&str],
    what: &'static str,
) -> Result<(String, usize, Option<String>), ParseError> {
    let (name, size, mut args) = named_with(command, tokens, what, &["gfp"])?;
    Ok((name, parse_host_size(size)?, args.text("gfp")))
}

fn named_with<'a>(
    command: &'static str,
    tokens: &[&'a str],
    what: &'static str,
    keys: &[&'static str],
) -> Result<(String, &'a str, KeyValues<'a>), ParseError> {
    let Some((&name, rest)) = tokens.split_first() else {
        return Err(ParseError::MissingName { command });
    };
    if name.contains('=') {
        return Err(ParseError::MissingName { command });
    }
    check_name(name)?;
    let Some((&positional, rest)) = rest.split_first().filter(|(p, _)| !p.contains('=')) else {
        return Err(ParseError::MissingArgument { command, what });
    };
    let args = KeyValues::parse(command, rest, keys)?;
    Ok((name.to_owned(), positional, args))
}

/// Checks that `name` is an identifier: a letter or `_`, then letters, digits and `_`.
fn check_name(name: &str) -> Result<(), ParseError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(ParseError::BadName(name.to_owned()))
    }
}

/// Checks that a command got no arguments.
fn no_arguments(command: &'static str, tokens: &[&str]) -> Result<(), ParseError> {
    match tokens.first() {
        Some(token) => Err(ParseError::UnexpectedArgument {
            command,
            token: (*token).to_owned(),
        }),
        None => Ok(()),
    }
}

/// Returns the single positional argument of a command.
fn one_argument<'a>(
    command: &'static str,
    tokens: &[&'a str],
    what: &'static str,
) -> Result<&'a str, ParseError> {
    match tokens {
        [] => Err(ParseError::MissingArgument { command, what }),
        [one] => Ok(one),
        [_, extra, ..] => Err(ParseError::UnexpectedArgument {
            command,
            token: (*extra).to_owned(),
        }),
    }
}

/// The `key=value` tokens of one command, checked against the keys it takes.
#[derive(Debug)]
struct KeyValues<'a> {
    /// The command word, for messages.
    command: &'static str,
    /// The pairs not yet taken, in line order.
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> KeyValues<'a> {
    /// Splits every token at its first `=`, refusing unknown and repeated keys.
    fn parse(
        command: &'static str,
        tokens: &[&'a str],
        keys: &[&'static str],
    ) -> Result<Self, ParseError> {
        let mut pairs: Vec<(&'a str, &'a str)> = Vec::with_capacity(tokens.len());
        for token in tokens {
            let Some((key, value)) = token.split_once('=') else {
                return Err(ParseError::NotKeyValue((*token).to_owned()));
            };
            if !keys.contains(&key) {
                let allowed = if keys.is_empty() {
                    "no keys".to_owned()
                } else {
                    keys.iter()
                        .map(|key| format!("{key}="))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                return Err(ParseError::UnknownKey {
                    command,
                    key: key.to_owned(),
                    allowed,
                });
            }
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(ParseError::DuplicateKey {
                    key: key.to_owned(),
                });
            }
            pairs.push((key, value));
        }
        Ok(KeyValues { command, pairs })
    }

    /// Removes and returns the raw value of `key`.
    fn take(&mut self, key: &str) -> Option<&'a str> {
        let index = self.pairs.iter().position(|(seen, _)| *seen == key)?;
        Some(self.pairs.remove(index).1)
    }

    /// The value of `key` as text.
    fn text(&mut self, key: &str) -> Option<String> {
        self.take(key).map(str::to_owned)
    }

    /// The value of `key` converted by `convert`, if given.
    fn optional<T>(
        &mut self,
        key: &'static str,
        convert: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ParseError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => convert(value)
                .map(Some)
                .map_err(|reason| ParseError::BadValue {
                    key,
                    value: value.to_owned(),
                    reason,
                }),
        }
    }

    /// The value of `key` converted by `convert`; an error if absent.
    fn required<T>(
        &mut self,
        key: &'static str,
        convert: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ParseError> {
        let command = self.command;
        self.optional(key, convert)?
            .ok_or(ParseError::MissingKey { command, key })
    }
}

/// Parses a decimal number, or a hexadecimal one with `0x`.
pub(crate) fn parse_number(text: &str) -> Result<usize, String> {
    let (digits, radix) = match text.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err("expected a number".to_owned());
    }
    usize::from_str_radix(digits, radix).map_err(|_| "number too large".to_owned())
}

/// Parses a buddy order (range checks are the allocator's).
fn parse_order(text: &str) -> Result<u32, String> {
    let order = parse_number(text)?;
    u32::try_from(order).map_err(|_| "order too large".to_owned())
}

/// Parses `on` or `off`.
fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".to_owned()),
    }
}

/// Parses a size in bytes: plain bytes, or a number with `K`, `M`, `G` or `T`
/// (optionally followed by `iB` or `B`; the units are binary, as `mem=` is in Linux).
/// The positional size of `vmalloc` and `kmalloc`: [`parse_size`], and it must fit this
/// host's `usize`.
fn parse_host_size(size: &str) -> Result<usize, ParseError> {
    parse_size(size)
        .and_then(|b| usize::try_from(b).map_err(|_| "too large for this host".to_owned()))
        .map_err(|reason| ParseError::BadValue {
            key: "size",
            value: size.to_owned(),
            reason,
        })
}

pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a size such as 4096, 16K, 64M or 2G".to_owned());
    }
    let shift = match suffix {
        "" | "B" => 0,
        "K" | "k" | "KiB" | "KB" => 10,
        "M" | "m" | "MiB" | "MB" => 20,
        "G" | "g" | "GiB" | "GB" => 30,
        "T" | "t" | "TiB" | "TB" => 40,
        _ => return Err(format!("unknown size suffix '{suffix}' (use K, M, G or T)")),
    };
    let value: u64 = digits.parse().map_err(|_| "size too large".to_owned())?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| "size too large".to_owned())
}

/// Parses a list of frame numbers and inclusive ranges: `5,10,12-15`.
pub(crate) fn parse_pfn_list(text: &str) -> Result<Vec<InclusiveRange>, String> {
    let mut ranges = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty item in the list".to_owned());
        }
        let range = match item.split_once('-') {
            Some((first, last)) => {
                let first = parse_number(first).map_err(|reason| format!("'{item}': {reason}"))?;
                let last = parse_number(last).map_err(|reason| format!("'{item}': {reason}"))?;
                if first > last {
                    return Err(format!("range '{item}' ends before it starts"));
                }
                InclusiveRange { first, last }
            }
            None => {
                let pfn = parse_number(item).map_err(|reason| format!("'{item}': {reason}"))?;
                InclusiveRange {
                    first: pfn,
                    last: pfn,
                }
            }
        };
        if let Some(earlier) = ranges.iter().find(|earlier: &&InclusiveRange| {
            earlier.first <= range.last && range.first <= earlier.last
        }) {
            return Err(format!(
                "'{}' overlaps '{}'",
                format_range(range),
                format_range(*earlier)
            ));
        }
        ranges.push(range);
    }
    Ok(ranges)
}

/// Writes a range the way scripts do: `5` or `12-15`.
fn format_range(range: InclusiveRange) -> String {
    if range.first == range.last {
        range.first.to_string()
    } else {
        format!("{}-{}", range.first, range.last)
    }
}

#[cfg(test)]
mod tests;
