//! Reading allocation traces: the `a ID SIZE [ALIGN]`, `f ID` and `r OLDID NEWID SIZE` lines of
//! `traces/README.md`, checked line by line and against the ID rules.
//!
//! [`TraceReader`] streams [`Event`]s out of any [`BufRead`], checking each line's syntax and the
//! rules that make a trace replayable: `f` and `r` name only live IDs, `a` and the new ID of `r`
//! only IDs that are not live.
//! It keeps running [`TraceStats`] (counts, live and peak bytes) as it goes.
//! [`Trace::load`] opens a file, gunzips it when its name ends in `.gz` or it starts with the gzip
//! magic, and reads the whole trace into a compact vector, so that a replay times the allocator
//! and not the parser.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use thiserror::Error;

/// The first two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Requests above this size fail in kmalloc (`KMALLOC_MAX_SIZE` with 4 KiB pages and
/// `MAX_PAGE_ORDER` 10, `include/linux/slab.h`).
pub(crate) const KMALLOC_MAX_SIZE: u64 = 4 << 20;

/// Requests up to this size are served by the kmalloc slab caches (`KMALLOC_MAX_CACHE_SIZE`
/// with SLUB and 4 KiB pages); larger ones go straight to the page allocator.
pub(crate) const KMALLOC_MAX_CACHE_SIZE: u64 = 8 << 10;

/// How the buffered readers size their buffers.
const READ_BUFFER: usize = 256 << 10;

/// The alignment an allocation asked for: glibc's default (16 bytes on x86-64) unless the trace
/// gives an `ALIGN` field, which is always a power of two above 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Align(u8);

impl Align {
    /// The alignment of plain `malloc` on x86-64, written in a trace as no `ALIGN` field.
    pub(crate) const MALLOC: Align = Align(4);

    /// An alignment from a trace's `ALIGN` field: `None` unless `bytes` is a power of two above
    /// 16.
    pub(crate) fn explicit(bytes: u64) -> Option<Align> {
        (bytes.is_power_of_two() && bytes > Align::MALLOC.bytes())
            .then(|| Align(bytes.trailing_zeros() as u8))
    }

    /// The alignment in bytes.
    pub(crate) fn bytes(self) -> u64 {
        1 << self.0
    }

    /// Whether the trace wrote this alignment (it is above the `malloc` default).
    pub(crate) fn is_explicit(self) -> bool {
        self != Align::MALLOC
    }
}

/// One heap event of a trace.
///
/// IDs are the tracer's small dense integers, not addresses; sizes are the requested sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// `a ID SIZE [ALIGN]`: an object of `size` bytes was allocated and is now named `id`.
    Alloc {
        /// The new object's name.
        id: u32,
        /// Bytes requested; may be 0.
        size: u64,
        /// The alignment requested.
        align: Align,
    },
    /// `f ID`: the live object `id` was freed.
    Free {
        /// The object freed.
        id: u32,
    },
    /// `r OLDID NEWID SIZE`: the live object `old` was resized to `size` bytes (never 0) and is
    /// now named `new`; its first `min(old size, size)` bytes are preserved.
    Realloc {
        /// The object before the call; dead afterwards.
        old: u32,
        /// The object after the call.
        new: u32,
        /// The new size in bytes.
        size: u64,
    },
}

impl fmt::Display for Event {
    /// Writes the event as its trace line, without the newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Alloc { id, size, align } if align.is_explicit() => {
                write!(f, "a {id} {size} {}", align.bytes())
            }
            Event::Alloc { id, size, .. } => write!(f, "a {id} {size}"),
            Event::Free { id } => write!(f, "f {id}"),
            Event::Realloc { old, new, size } => write!(f, "r {old} {new} {size}"),
        }
    }
}

/// Why a line is not a trace event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum Malformed {
    /// A line with nothing on it.
    #[error("empty line")]
    EmptyLine,
    /// A first field other than `a`, `f` or `r`.
    #[error("unknown event '{0}' (expected a, f or r)")]
    UnknownEvent(String),
    /// A line that ends before a required field.
    #[error("missing {0}")]
    MissingField(&'static str),
    /// An empty field: two spaces in a row, or a space at the end of the line.
    #[error("empty {0} (fields are separated by exactly one space)")]
    EmptyField(&'static str),
    /// A field that is not an unsigned decimal number without sign or leading zeros.
    #[error("{field} '{text}' is not an unsigned decimal number without leading zeros")]
    BadNumber {
        /// Which field.
        field: &'static str,
        /// The field as written (shortened when long).
        text: String,
    },
    /// A number too large for its field.
    #[error("{field} '{text}' is too large")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// The field as written (shortened when long).
        text: String,
    },
    /// More fields than the event has.
    #[error("unexpected text after the event: '{0}'")]
    TrailingText(String),
    /// An `ALIGN` field that is not a power of two above 16.
    #[error("alignment {0} is not a power of two above 16")]
    BadAlign(u64),
    /// An `r` event to size 0 (the tracer writes `realloc(p, 0)` as `f`).
    #[error("realloc to size 0 (realloc(p, 0) is written as a free)")]
    ZeroRealloc,
    /// A last line without its newline: the trace was probably cut short.
    #[error("the last line does not end with a newline (truncated trace?)")]
    Unterminated,
}

/// A well-formed line that breaks the ID rules of the trace format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum RuleViolation {
    /// `f` of an ID that is not live.
    #[error("free of id {0}, which is not live")]
    FreeOfDeadId(u32),
    /// `r` whose old ID is not live.
    #[error("realloc of id {0}, which is not live")]
    ReallocOfDeadId(u32),
    /// `a` of an ID that is still live.
    #[error("alloc names id {0}, which is still live")]
    AllocOfLiveId(u32),
    /// `r` whose new ID is still live (this includes `NEWID` = `OLDID`).
    #[error("realloc result names id {0}, which is still live")]
    ReallocToLiveId(u32),
    /// An ID larger than any a tracer can have handed out by this line: IDs are dense, so line
    /// `n` can introduce at most ID `n - 1`.
    /// The bound keeps a replayer's flat table of objects as small as the trace.
    #[error("id {id} is above {limit}, the largest id a dense trace can have reached by this line")]
    IdOutOfRange {
        /// The ID.
        id: u32,
        /// The largest ID allowed on this line.
        limit: u64,
    },
    /// More bytes live at once than a 64-bit address space holds.
    #[error("the live objects would exceed 2^64 bytes")]
    LiveBytesOverflow,
}

/// Why a trace could not be read.
#[derive(Debug, Error)]
pub(crate) enum TraceError {
    /// The file could not be opened or its first bytes read.
    #[error("cannot read {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Reading (or gunzipping) failed partway.
    #[error("line {line}: read error: {source}")]
    Read {
        /// The line being read (1-based).
        line: u64,
        /// What the reader said.
        source: io::Error,
    },
    /// A line that is not an event.
    #[error("line {line}: {kind}")]
    Malformed {
        /// The line (1-based).
        line: u64,
        /// What is wrong with it.
        kind: Malformed,
    },
    /// An event that breaks the ID rules.
    #[error("line {line}: {kind}")]
    Rule {
        /// The line (1-based).
        line: u64,
        /// Which rule.
        kind: RuleViolation,
    },
}

/// Counts over the events read so far; once a trace is read to the end, the counts of the whole
/// trace.
///
/// Bytes are requested sizes; a realloc counts as one event that changes the live bytes by the
/// difference of its sizes and leaves the live object count as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TraceStats {
    /// Events (lines).
    pub(crate) events: u64,
    /// `a` events.
    pub(crate) allocs: u64,
    /// `f` events.
    pub(crate) frees: u64,
    /// `r` events.
    pub(crate) reallocs: u64,
    /// The largest ID named, or `None` for an empty trace.
    pub(crate) max_id: Option<u32>,
    /// Objects live now (at the end of a whole trace: the objects the program never freed).
    pub(crate) live_objects: u64,
    /// Bytes live now.
    pub(crate) live_bytes: u64,
    /// The most bytes live at once.
    pub(crate) peak_live_bytes: u64,
    /// The most objects live at once; during a realloc both the old and the new object count,
    /// as in the tracer (which names the new object while the old one is live).
    pub(crate) peak_live_objects: u64,
    /// The 0-based index of the event after which `peak_live_bytes` was first reached.
    pub(crate) peak_live_bytes_event: u64,
    /// `a` and `r` requests of at most [`KMALLOC_MAX_CACHE_SIZE`] bytes: kmalloc serves them
    /// from its slab caches.
    pub(crate) slab_sized_requests: u64,
    /// `a` and `r` requests above [`KMALLOC_MAX_SIZE`]: kmalloc refuses them.
    pub(crate) requests_above_kmalloc_max: u64,
}

impl TraceStats {
    /// The number of IDs a replayer's flat object table needs: `max_id + 1`.
    pub(crate) fn id_slots(&self) -> usize {
        self.max_id.map_or(0, |id| id as usize + 1)
    }

    /// Accounts one object becoming live; its bytes must fit (see [`TraceStats::fits`]).
    fn add_live(&mut self, size: u64) {
        self.live_objects += 1;
        self.live_bytes += size;
        self.peak_live_objects = self.peak_live_objects.max(self.live_objects);
    }

    /// Checks that `size` more live bytes still fit in 64 bits.
    fn fits(&self, size: u64) -> Result<(), RuleViolation> {
        self.live_bytes
            .checked_add(size)
            .map(drop)
            .ok_or(RuleViolation::LiveBytesOverflow)
    }

    /// Accounts one object dying.
    fn remove_live(&mut self, size: u64) {
        self.live_objects -= 1;
        self.live_bytes -= size;
    }

    /// Accounts an `a` or `r` request of `size` bytes.
    fn request(&mut self, size: u64) {
        if size <= KMALLOC_MAX_CACHE_SIZE {
            self.slab_sized_requests += 1;
        } else if size > KMALLOC_MAX_SIZE {
            self.requests_above_kmalloc_max += 1;
        }
    }

    /// Notes the ID `id` as named by an event.
    fn see_id(&mut self, id: u32) {
        self.max_id = Some(self.max_id.map_or(id, |max| max.max(id)));
    }
}

/// A streaming reader of trace events that checks every line and the ID rules.
///
/// It yields events until the end of the input or the first error, after which it yields
/// nothing more.
/// Its [`stats`](TraceReader::stats) cover the events yielded so far.
#[derive(Debug)]
pub(crate) struct TraceReader<R> {
    /// Where the lines come from.
    input: R,
    /// The current line, reused from line to line.
    line: Vec<u8>,
    /// The number of the last line read (1-based).
    line_number: u64,
    /// The size of each live ID, `None` for IDs not live.
    live: Vec<Option<u64>>,
    /// Counts so far.
    stats: TraceStats,
    /// Set after an error or the end of the input.
    done: bool,
}

impl<R: BufRead> TraceReader<R> {
    /// A reader of the trace on `input`.
    pub(crate) fn new(input: R) -> TraceReader<R> {
        TraceReader {
            input,
            line: Vec::with_capacity(64),
            line_number: 0,
            live: Vec::new(),
            stats: TraceStats::default(),
            done: false,
        }
    }

    /// Counts over the events yielded so far.
    pub(crate) fn stats(&self) -> &TraceStats {
        &self.stats
    }

    /// Reads, parses and checks the next line; `Ok(None)` at the end of the input.
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        self.line.clear();
        let line = self.line_number + 1;
        let read = self
            .input
            .read_until(b'\n', &mut self.line)
            .map_err(|source| TraceError::Read { line, source })?;
        if read == 0 {
            return Ok(None);
        }
        self.line_number = line;
        let Some(text) = self.line.strip_suffix(b"\n") else {
            return Err(TraceError::Malformed {
                line,
                kind: Malformed::Unterminated,
            });
        };
        let event = parse_event(text).map_err(|kind| TraceError::Malformed { line, kind })?;
        self.apply(event)
            .map_err(|kind| TraceError::Rule { line, kind })?;
        Ok(Some(event))
    }

    /// Checks `event` against the live IDs and applies it to them and to the counts; on error
    /// nothing changes.
    fn apply(&mut self, event: Event) -> Result<(), RuleViolation> {
        // Each line introduces at most one new ID, and a dense trace hands out the next unused
        // integer, so line `n` (1-based) names no ID above `n - 1`.
        let limit = self.line_number - 1;
        let check_range = |id: u32| {
            if u64::from(id) > limit {
                Err(RuleViolation::IdOutOfRange { id, limit })
            } else {
                Ok(())
            }
        };
        match event {
            Event::Alloc { id, size, .. } => {
                check_range(id)?;
                if self.size_of(id).is_some() {
                    return Err(RuleViolation::AllocOfLiveId(id));
                }
                self.stats.fits(size)?;
                self.set(id, Some(size));
                self.stats.allocs += 1;
                self.stats.request(size);
                self.stats.add_live(size);
            }
            Event::Free { id } => {
                let size = self.size_of(id).ok_or(RuleViolation::FreeOfDeadId(id))?;
                self.set(id, None);
                self.stats.frees += 1;
                self.stats.remove_live(size);
            }
            Event::Realloc { old, new, size } => {
                let old_size = self
                    .size_of(old)
                    .ok_or(RuleViolation::ReallocOfDeadId(old))?;
                check_range(new)?;
                if self.size_of(new).is_some() {
                    return Err(RuleViolation::ReallocToLiveId(new));
                }
                self.stats.fits(size)?;
                // The new object exists while the old one is still live, as in the tracer.
                self.set(new, Some(size));
                self.stats.add_live(size);
                self.set(old, None);
                self.stats.remove_live(old_size);
                self.stats.reallocs += 1;
                self.stats.request(size);
            }
        }
        // Only `a` and the new ID of `r` bring IDs to life; `f` and the old ID of `r` name IDs
        // seen before.
        match event {
            Event::Alloc { id, .. } | Event::Realloc { new: id, .. } => self.stats.see_id(id),
            Event::Free { .. } => {}
        }
        if self.stats.live_bytes > self.stats.peak_live_bytes {
            self.stats.peak_live_bytes = self.stats.live_bytes;
            self.stats.peak_live_bytes_event = self.stats.events;
        }
        self.stats.events += 1;
        Ok(())
    }

    /// The size of `id` if it is live.
    fn size_of(&self, id: u32) -> Option<u64> {
        self.live.get(id as usize).copied().flatten()
    }

    /// Sets the state of `id`, growing the table as needed.
    fn set(&mut self, id: u32, size: Option<u64>) {
        let index = id as usize;
        if index >= self.live.len() {
            self.live.resize(index + 1, None);
        }
        self.live[index] = size;
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_event() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Splits a line into its space-separated fields, reporting missing and empty ones by name.
struct Fields<'a> {
    /// The rest of the line.
    rest: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// The next field, which must exist and be non-empty.
    fn required(&mut self, name: &'static str) -> Result<&'a [u8], Malformed> {
        self.optional(name)?.ok_or(Malformed::MissingField(name))
    }

    /// The next field if the line goes on; it must not be empty.
    fn optional(&mut self, name: &'static str) -> Result<Option<&'a [u8]>, Malformed> {
        let Some(rest) = self.rest else {
            return Ok(None);
        };
        let field = match rest.iter().position(|&byte| byte == b' ') {
            Some(space) => {
                self.rest = Some(&rest[space + 1..]);
                &rest[..space]
            }
            None => {
                self.rest = None;
                rest
            }
        };
        if field.is_empty() {
            return Err(Malformed::EmptyField(name));
        }
        Ok(Some(field))
    }

    /// Succeeds if the line has no more fields.
    fn end(&self) -> Result<(), Malformed> {
        match self.rest {
            None => Ok(()),
            Some(rest) => Err(Malformed::TrailingText(shorten(rest))),
        }
    }
}

/// Parses one line (without its newline) into an event.
pub(crate) fn parse_event(line: &[u8]) -> Result<Event, Malformed> {
    if line.is_empty() {
        return Err(Malformed::EmptyLine);
    }
    let mut fields = Fields { rest: Some(line) };
    let kind = fields.required("event")?;
    let event = match kind {
        b"a" => {
            let id = id(fields.required("ID")?, "ID")?;
            let size = number(fields.required("SIZE")?, "SIZE")?;
            let align = match fields.optional("ALIGN")? {
                None => Align::MALLOC,
                Some(text) => {
                    let bytes = number(text, "ALIGN")?;
                    Align::explicit(bytes).ok_or(Malformed::BadAlign(bytes))?
                }
            };
            Event::Alloc { id, size, align }
        }
        b"f" => Event::Free {
            id: id(fields.required("ID")?, "ID")?,
        },
        b"r" => {
            let old = id(fields.required("OLDID")?, "OLDID")?;
            let new = id(fields.required("NEWID")?, "NEWID")?;
            let size = number(fields.required("SIZE")?, "SIZE")?;
            if size == 0 {
                return Err(Malformed::ZeroRealloc);
            }
            Event::Realloc { old, new, size }
        }
        other => return Err(Malformed::UnknownEvent(shorten(other))),
    };
    fields.end()?;
    Ok(event)
}

/// Parses an unsigned decimal number without sign or leading zeros.
fn number(text: &[u8], field: &'static str) -> Result<u64, Malformed> {
    let well_formed = text.iter().all(u8::is_ascii_digit) && (text == b"0" || text[0] != b'0');
    if !well_formed {
        return Err(Malformed::BadNumber {
            field,
            text: shorten(text),
        });
    }
    text.iter()
        .try_fold(0u64, |value, &digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or_else(|| Malformed::TooLarge {
            field,
            text: shorten(text),
        })
}

/// Parses an ID: a number that fits in 32 bits.
fn id(text: &[u8], field: &'static str) -> Result<u32, Malformed> {
    u32::try_from(number(text, field)?).map_err(|_| Malformed::TooLarge {
        field,
        text: shorten(text),
    })
}

/// A field for an error message: lossy UTF-8, cut after 40 characters.
fn shorten(text: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(text);
    if text.chars().count() <= MAX {
        text.into_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// Opens a trace file for reading, gunzipping it when its name ends in `.gz` or it starts with
/// the gzip magic bytes.
pub(crate) fn open(path: &Path) -> Result<Box<dyn BufRead>, TraceError> {
    let open_error = |source| TraceError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let starts_with_magic = reader
        .fill_buf()
        .map_err(open_error)?
        .starts_with(&GZIP_MAGIC);
    let gz_name = path.extension().is_some_and(|extension| extension == "gz");
    if starts_with_magic || gz_name {
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(reader),
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// A whole trace, read into memory and checked: every event in it is well-formed and obeys the
/// ID rules, which is what lets a replayer keep its objects in a flat table of
/// [`TraceStats::id_slots`] entries.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    /// A name for reports (the file name).
    name: String,
    /// The events in order.
    events: Vec<Event>,
    /// Counts over all the events.
    stats: TraceStats,
}

impl Trace {
    /// Reads and checks the trace at `path` (plain or gzip-compressed); the trace is named after
    /// the file.
    pub(crate) fn load(path: &Path) -> Result<Trace, TraceError> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        Trace::read(name, open(path)?)
    }

    /// Reads and checks a whole trace from `input`.
    pub(crate) fn read(name: impl Into<String>, input: impl BufRead) -> Result<Trace, TraceError> {
        let mut reader = TraceReader::new(input);
        let mut events = Vec::new();
        for event in reader.by_ref() {
            events.push(event?);
        }
        events.shrink_to_fit();
        Ok(Trace {
            name: name.into(),
            events,
            stats: reader.stats().clone(),
        })
    }

    /// The trace's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The events in order.
    pub(crate) fn events(&self) -> &[Event] {
        &self.events
    }

    /// Counts over the whole trace.
    pub(crate) fn stats(&self) -> &TraceStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests;
