//! The replay loop: runs a parsed [`Trace`] through a [`ReplayHeap`], timed as a whole.
//!
//! The clock runs around the loop over the events and nothing else: the trace was parsed
//! before, and the occasional footprint sample, invariant check and progress report inside the
//! loop are timed separately and taken out.
//! After the last event the replay frees the objects the program left live, checks every
//! marked byte on the way, and asks the heap to confirm that it gave everything back.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::replay::heap::{FootprintInfo, HeapError, ObjectError, Objects, ReplayHeap};
use crate::replay::trace::{Event, Trace};

/// How often the replay looks at the heap while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayOptions {
    /// Samples the heap's footprint after every this many events (0: only at the peak of live
    /// bytes and at the end).
    pub(crate) sample_every: u64,
    /// Runs the heap's `check_invariants` after every this many events (0: only at the end).
    pub(crate) check_every: u64,
    /// Reports progress after every this many events (0: only at the end).
    pub(crate) progress_every: u64,
}

impl Default for ReplayOptions {
    fn default() -> ReplayOptions {
        ReplayOptions {
            sample_every: 8192,
            check_every: 0,
            progress_every: 1 << 16,
        }
    }
}

/// Allocations and reallocs the heap did not serve, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Failures {
    /// Requests above the heap's largest size.
    pub(crate) too_large: u64,
    /// The limit the first too-large request hit: its name and size in bytes.
    pub(crate) limit: Option<(&'static str, usize)>,
    /// Requests the heap had no memory for.
    pub(crate) out_of_memory: u64,
    /// Requests refused for other reasons.
    pub(crate) other: u64,
    /// The first of the other reasons.
    pub(crate) first_other: Option<String>,
}

impl Failures {
    /// Counts one refusal.
    fn record(&mut self, error: HeapError) {
        match error {
            HeapError::TooLarge {
                limit, limit_name, ..
            } => {
                self.too_large += 1;
                self.limit.get_or_insert((limit_name, limit));
            }
            HeapError::OutOfMemory { .. } => self.out_of_memory += 1,
            HeapError::Other(reason) => {
                self.other += 1;
                self.first_other.get_or_insert(reason);
            }
        }
    }

    /// All refusals.
    pub(crate) fn total(&self) -> u64 {
        self.too_large + self.out_of_memory + self.other
    }

    /// Why requests failed, for the report: `above KMALLOC_MAX_SIZE 4 MiB` when all were too
    /// large, a list of counts and reasons otherwise; `None` when nothing failed.
    pub(crate) fn reasons(&self) -> Option<String> {
        let too_large = self.limit.map(|(name, limit)| {
            let limit = if limit % (1 << 20) == 0 {
                format!("{} MiB", limit >> 20)
            } else {
                format!("{limit} bytes")
            };
            format!("above {name} {limit}")
        });
        let parts: Vec<(u64, String)> = [
            (self.too_large, too_large),
            (self.out_of_memory, Some("out of memory".to_owned())),
            (self.other, self.first_other.clone()),
        ]
        .into_iter()
        .filter(|&(count, _)| count > 0)
        .map(|(count, reason)| (count, reason.unwrap_or_default()))
        .collect();
        match parts.as_slice() {
            [] => None,
            [(_, reason)] => Some(reason.clone()),
            _ => Some(
                parts
                    .iter()
                    .map(|(count, reason)| format!("{count} {reason}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
}

/// What one replay measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplayReport {
    /// The heap's name.
    pub(crate) heap: String,
    /// Events replayed.
    pub(crate) ops: u64,
    /// Time spent replaying them.
    pub(crate) elapsed: Duration,
    /// The most bytes the heap held for the program at once (requested sizes).
    pub(crate) peak_live_bytes: u64,
    /// The most objects the heap held for the program at once.
    pub(crate) peak_live_objects: u64,
    /// Objects the program left live, which the replay freed afterwards.
    pub(crate) live_at_end_objects: u64,
    /// Their bytes.
    pub(crate) live_at_end_bytes: u64,
    /// Requests the heap refused.
    pub(crate) failures: Failures,
    /// The heap's footprint just after the event where the trace's live bytes peaked.
    pub(crate) at_peak_live: Option<FootprintInfo>,
    /// The bytes the heap held for the program at that moment (less than the trace's peak when
    /// it refused some of them).
    pub(crate) held_at_peak_live: u64,
    /// The most pages the heap held: its own count if it keeps one, else the largest sample.
    pub(crate) peak_pages: Option<u64>,
    /// The heap's footprint after the last event, before the replay freed what was left.
    pub(crate) at_end: Option<FootprintInfo>,
    /// Footprint samples taken.
    pub(crate) samples: u64,
}

impl ReplayReport {
    /// Nanoseconds per event.
    pub(crate) fn ns_per_op(&self) -> f64 {
        if self.ops == 0 {
            0.0
        } else {
            self.elapsed.as_secs_f64() * 1e9 / self.ops as f64
        }
    }
}

/// Why a replay stopped.
#[derive(Debug, Error)]
pub(crate) enum ReplayError {
    /// An event went wrong in a way that is not a refused request: corruption, a failing free.
    #[error("{heap}: line {line}: {error}")]
    Object {
        /// The heap.
        heap: String,
        /// The trace line of the event.
        line: u64,
        /// What went wrong.
        error: ObjectError,
    },
    /// The heap's invariant check failed.
    #[error("{heap}: after line {line}: heap check failed: {reason}")]
    Invariant {
        /// The heap.
        heap: String,
        /// The last trace line replayed.
        line: u64,
        /// The heap's reason.
        reason: String,
    },
    /// Freeing the objects left at the end went wrong.
    #[error("{heap}: freeing the objects left live at the end: {error}")]
    Cleanup {
        /// The heap.
        heap: String,
        /// What went wrong.
        error: ObjectError,
    },
    /// The heap did not give everything back once all objects were freed.
    #[error("{heap}: after freeing every object: {reason}")]
    NotEmpty {
        /// The heap.
        heap: String,
        /// The heap's reason.
        reason: String,
    },
}

/// The next event index at which each periodic task is due.
#[derive(Debug)]
struct Schedule {
    /// The next footprint sample.
    sample: u64,
    /// The next invariant check.
    check: u64,
    /// The next progress report.
    progress: u64,
    /// The event after which the trace's live bytes peak (sampled once).
    peak: u64,
    /// The earliest of the above.
    next: u64,
}

impl Schedule {
    /// Never.
    const NEVER: u64 = u64::MAX;

    /// The first due points for `options`, with the live-bytes peak after event `peak`.
    fn new(options: &ReplayOptions, peak: u64) -> Schedule {
        let first = |every: u64| if every == 0 { Self::NEVER } else { every - 1 };
        let mut schedule = Schedule {
            sample: first(options.sample_every),
            check: first(options.check_every),
            progress: first(options.progress_every),
            peak,
            next: 0,
        };
        schedule.update();
        schedule
    }

    /// Recomputes the earliest due point.
    fn update(&mut self) {
        self.next = self
            .sample
            .min(self.check)
            .min(self.progress)
            .min(self.peak);
    }
}

/// The larger of two optional page counts.
fn max_pages(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A request size as the heap takes it; sizes beyond `usize` become `usize::MAX`, which every
/// heap refuses.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Replays `trace` through `heap`: the events, timed; then frees what the program left live and
/// has the heap check it is empty.
///
/// `progress` is called with the number of events done every `options.progress_every` events
/// and at the end.
/// Requests the heap refuses are counted in the report and the replay goes on (the ID holds no
/// memory until it dies); corruption, a failing free or a failing heap check stop it.
pub(crate) fn replay<H: ReplayHeap + ?Sized>(
    heap: &mut H,
    trace: &Trace,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, ReplayError> {
    let name = heap.name().to_owned();
    let events = trace.events();
    let ops = events.len() as u64;
    let mut objects = Objects::new(heap, trace.stats().id_slots());
    let mut failures = Failures::default();
    let mut schedule = Schedule::new(
        options,
        if ops == 0 {
            Schedule::NEVER
        } else {
            trace.stats().peak_live_bytes_event
        },
    );
    let mut peak_live_bytes = 0;
    let mut peak_live_objects = 0;
    let mut at_peak_live = None;
    let mut held_at_peak_live = 0;
    let mut sampled_peak_pages = None;
    let mut samples = 0;
    let mut paused = Duration::ZERO;
    let object_error = |index: usize, error| ReplayError::Object {
        heap: name.clone(),
        line: index as u64 + 1,
        error,
    };

    let start = Instant::now();
    for (index, event) in events.iter().enumerate() {
        let done = match *event {
            Event::Alloc { id, size, align } => {
                objects.alloc(id, to_usize(size), to_usize(align.bytes()))
            }
            Event::Free { id } => objects.free(id),
            Event::Realloc { old, new, size } => objects.realloc(old, new, to_usize(size)),
        };
        match done {
            Ok(()) => {}
            Err(ObjectError::Failed(error)) => failures.record(error),
            Err(error) => return Err(object_error(index, error)),
        }
        peak_live_bytes = peak_live_bytes.max(objects.held_bytes());
        peak_live_objects = peak_live_objects.max(objects.held());

        let index = index as u64;
        if index == schedule.next {
            let pause = Instant::now();
            if index == schedule.sample || index == schedule.peak {
                if let Some(footprint) = objects.heap().footprint() {
                    samples += 1;
                    sampled_peak_pages = max_pages(sampled_peak_pages, Some(footprint.pages_held));
                    if index == schedule.peak {
                        at_peak_live = Some(footprint);
                        held_at_peak_live = objects.held_bytes();
                    }
                }
                if index == schedule.sample {
                    schedule.sample += options.sample_every;
                }
                if index == schedule.peak {
                    schedule.peak = Schedule::NEVER;
                }
            }
            if index == schedule.check {
                objects
                    .heap()
                    .check_invariants()
                    .map_err(|reason| ReplayError::Invariant {
                        heap: name.clone(),
                        line: index + 1,
                        reason,
                    })?;
                schedule.check += options.check_every;
            }
            if index == schedule.progress {
                progress(index + 1);
                schedule.progress += options.progress_every;
            }
            schedule.update();
            paused += pause.elapsed();
        }
    }
    let elapsed = start.elapsed().saturating_sub(paused);
    progress(ops);

    let at_end = objects.heap().footprint();
    let peak_pages = at_end.map(|footprint| {
        max_pages(
            max_pages(sampled_peak_pages, Some(footprint.pages_held)),
            footprint.peak_pages_held,
        )
        .unwrap_or(footprint.pages_held)
    });
    objects
        .heap()
        .check_invariants()
        .map_err(|reason| ReplayError::Invariant {
            heap: name.clone(),
            line: ops,
            reason,
        })?;
    let live_at_end_objects = objects.held() as u64;
    let live_at_end_bytes = objects.held_bytes();
    objects.free_all().map_err(|error| ReplayError::Cleanup {
        heap: name.clone(),
        error,
    })?;
    objects
        .heap_mut()
        .verify_empty()
        .map_err(|reason| ReplayError::NotEmpty {
            heap: name.clone(),
            reason,
        })?;

    Ok(ReplayReport {
        heap: name,
        ops,
        elapsed,
        peak_live_bytes,
        peak_live_objects: peak_live_objects as u64,
        live_at_end_objects,
        live_at_end_bytes,
        failures,
        at_peak_live,
        held_at_peak_live,
        peak_pages,
        at_end,
        samples,
    })
}

#[cfg(test)]
mod tests;
