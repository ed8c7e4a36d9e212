//! The two sliding windows a closed breaker judges its calls by. Both are
//! lock-free and O(1) per call, and both keep running totals that are
//! subtracted from as old calls leave the window, so judging reads three
//! numbers rather than walking the window.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};

/// Failure and slow-call totals over the calls a window holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// What one finished call adds to a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

impl Mark {
    fn code(self) -> u8 {
        u8::from(self.failure) | (u8::from(self.slow) << 1)
    }
}

#[inline]
fn read(total: &AtomicI64) -> u64 {
    // Concurrent updates may leave a total briefly below zero.
    total.load(Ordering::Relaxed).max(0) as u64
}

/// The last `size` calls, in a ring of one byte per call.
///
/// A healthy call replacing a healthy call only reads its slot, so a busy,
/// healthy breaker shares its cache lines instead of bouncing them.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    failures: AtomicI64,
    slow: AtomicI64,
}

impl CountWindow {
    pub(crate) fn new(size: usize) -> Self {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
        }
    }

    /// Every slot holds a call, and none a failure or a slow call.
    #[inline]
    pub(crate) fn full_and_clean(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= self.slots.len() as u64
            && read(&self.failures) == 0
            && read(&self.slow) == 0
    }

    pub(crate) fn record(&self, mark: Mark) -> Totals {
        let size = self.slots.len() as u64;
        let code = mark.code();
        // A clean call into a full, clean window changes nothing anyone can
        // see (every slot holds the same thing), so a healthy breaker only
        // reads here: no write, no cache line bouncing between cores.
        if code == 0 && self.full_and_clean() {
            return Totals {
                calls: size,
                failures: 0,
                slow: 0,
            };
        }
        let seen = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(seen % size) as usize];
        // Only touch the slot (and the totals) when its content changes.
        if code != 0 || slot.load(Ordering::Relaxed) != 0 {
            let old = slot.swap(code, Ordering::Relaxed);
            let delta = |bit: u8| i64::from(code & bit != 0) - i64::from(old & bit != 0);
            if delta(1) != 0 {
                self.failures.fetch_add(delta(1), Ordering::Relaxed);
            }
            if delta(2) != 0 {
                self.slow.fetch_add(delta(2), Ordering::Relaxed);
            }
        }
        Totals {
            calls: (seen + 1).min(size),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals {
            calls: self
                .next
                .load(Ordering::Relaxed)
                .min(self.slots.len() as u64),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        self.next.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
    }
}

const TAG_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << (64 - TAG_BITS)) - 1;

fn tag_of(epoch: u64) -> u64 {
    epoch & ((1 << TAG_BITS) - 1)
}

/// True when tag `a` is a later epoch than tag `b` (tags wrap).
fn tag_newer(a: u64, b: u64) -> bool {
    let diff = a.wrapping_sub(b) & ((1 << TAG_BITS) - 1);
    diff != 0 && diff < (1 << (TAG_BITS - 1))
}

/// One counter of one bucket: the bucket's epoch (as a wrapping tag) and a
/// count, in one word so that starting a new epoch and counting in it are
/// one atomic step.
struct Cell(AtomicU64);

impl Cell {
    fn pack(tag: u64, count: u64) -> u64 {
        (tag << (64 - TAG_BITS)) | count.min(COUNT_MASK)
    }

    fn unpack(word: u64) -> (u64, u64) {
        (word >> (64 - TAG_BITS), word & COUNT_MASK)
    }

    /// Counts one call of `epoch`; returns the change to the running total
    /// (one, less whatever an expired epoch left in this cell).
    fn add(&self, epoch: u64) -> i64 {
        let tag = tag_of(epoch);
        let mut word = self.0.load(Ordering::Relaxed);
        loop {
            let (old_tag, count) = Cell::unpack(word);
            let (next, delta) = if old_tag == tag {
                (Cell::pack(tag, count + 1), 1)
            } else if count != 0 && tag_newer(old_tag, tag) {
                // The call is older than what the cell holds: it has left the window.
                return 0;
            } else {
                (Cell::pack(tag, 1), 1 - count as i64)
            };
            match self
                .0
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return delta,
                Err(current) => word = current,
            }
        }
    }

    /// Empties the cell unless it belongs to `live` epoch; returns what it held.
    fn expire(&self, live: u64) -> i64 {
        let mut word = self.0.load(Ordering::Relaxed);
        loop {
            let (tag, count) = Cell::unpack(word);
            if count == 0 || tag == tag_of(live) || tag_newer(tag, tag_of(live)) {
                return 0;
            }
            match self.0.compare_exchange_weak(
                word,
                Cell::pack(tag, 0),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return count as i64,
                Err(current) => word = current,
            }
        }
    }
}

/// The calls of the last `buckets × width` microseconds, in a ring of buckets.
pub(crate) struct TimeWindow {
    /// Three cells per bucket: calls, failures, slow calls.
    cells: Box<[Cell]>,
    buckets: u64,
    width_us: u64,
    /// The newest epoch a sweep has run for.
    swept: AtomicU64,
    calls: AtomicI64,
    failures: AtomicI64,
    slow: AtomicI64,
}

impl TimeWindow {
    pub(crate) fn new(buckets: usize, width_us: u64) -> Self {
        TimeWindow {
            cells: (0..buckets * 3).map(|_| Cell(AtomicU64::new(0))).collect(),
            buckets: buckets as u64,
            width_us: width_us.max(1),
            swept: AtomicU64::new(0),
            calls: AtomicI64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
        }
    }

    pub(crate) fn record(&self, mark: Mark, now_us: u64) -> Totals {
        let epoch = now_us / self.width_us;
        self.sweep(epoch);
        if epoch + self.buckets <= self.swept.load(Ordering::Relaxed) {
            // Reported so late that its bucket has left the window.
            return self.totals();
        }
        let base = (epoch % self.buckets) as usize * 3;
        let counted = [(0, true), (1, mark.failure), (2, mark.slow)];
        let totals = [&self.calls, &self.failures, &self.slow];
        for (index, counts) in counted {
            if counts {
                let delta = self.cells[base + index].add(epoch);
                if delta != 0 {
                    totals[index].fetch_add(delta, Ordering::Relaxed);
                }
            }
        }
        self.totals()
    }

    /// Once per new epoch, empties every bucket that has left the window, so
    /// the running totals forget calls even in buckets no call revisits.
    fn sweep(&self, epoch: u64) {
        let swept = self.swept.load(Ordering::Relaxed);
        if epoch <= swept
            || self
                .swept
                .compare_exchange(swept, epoch, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let totals = [&self.calls, &self.failures, &self.slow];
        for bucket in 0..self.buckets {
            // The one epoch this bucket may hold and still be in the window.
            let Some(live) = epoch.checked_sub((epoch + self.buckets - bucket) % self.buckets)
            else {
                continue;
            };
            for (index, total) in totals.iter().enumerate() {
                let gone = self.cells[bucket as usize * 3 + index].expire(live);
                if gone != 0 {
                    total.fetch_sub(gone, Ordering::Relaxed);
                }
            }
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals {
            calls: read(&self.calls),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    pub(crate) fn clear(&self) {
        for cell in self.cells.iter() {
            cell.0.store(0, Ordering::Relaxed);
        }
        self.calls.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
    }
}

/// The window a breaker was configured with.
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn record(&self, mark: Mark, now_us: impl FnOnce() -> u64) -> Totals {
        match self {
            Window::Count(window) => window.record(mark),
            Window::Time(window) => window.record(mark, now_us()),
        }
    }

    /// The totals now: a time window first forgets buckets that have left it.
    pub(crate) fn totals(&self, now_us: impl FnOnce() -> u64) -> Totals {
        match self {
            Window::Count(window) => window.totals(),
            Window::Time(window) => {
                window.sweep(now_us() / window.width_us);
                window.totals()
            }
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Window::Count(window) => window.clear(),
            Window::Time(window) => window.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_compare_across_the_wrap() {
        let top = (1 << TAG_BITS) - 1;
        assert!(tag_newer(5, 4));
        assert!(!tag_newer(4, 5));
        assert!(!tag_newer(7, 7), "a tag is not newer than itself");
        // Tags wrap: 0 comes right after the largest tag.
        assert!(tag_newer(0, top));
        assert!(!tag_newer(top, 0));
        // Up to half the tag space ahead is newer; beyond it, older.
        let half = 1 << (TAG_BITS - 1);
        assert!(tag_newer(half - 1, 0));
        assert!(!tag_newer(half, 0));
        assert!(tag_newer(tag_of(1_000_000_000), tag_of(1_000_000_000 - 3)));
    }

    #[test]
    fn a_mark_codes_failure_and_slowness_as_two_bits() {
        let code = |failure, slow| Mark { failure, slow }.code();
        assert_eq!(
            [
                code(false, false),
                code(true, false),
                code(false, true),
                code(true, true)
            ],
            [0, 1, 2, 3]
        );
    }

    const OK: Mark = Mark {
        failure: false,
        slow: false,
    };
    const FAIL: Mark = Mark {
        failure: true,
        slow: false,
    };
    const SLOW: Mark = Mark {
        failure: false,
        slow: true,
    };

    #[test]
    fn count_window_slides() {
        let window = CountWindow::new(4);
        for _ in 0..1000 {
            window.record(OK);
        }
        assert_eq!(window.totals().failures, 0);
        window.record(FAIL);
        window.record(FAIL);
        let totals = window.record(SLOW);
        assert_eq!(
            totals,
            Totals {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
        for _ in 0..4 {
            window.record(OK);
        }
        assert_eq!(window.totals().failures, 0);
        assert_eq!(window.totals().slow, 0);
    }

    #[test]
    fn count_window_counts_up_to_its_size() {
        let window = CountWindow::new(10);
        assert_eq!(window.record(FAIL).calls, 1);
        assert_eq!(window.record(OK).calls, 2);
        window.clear();
        assert_eq!(window.totals(), Totals::default());
    }

    #[test]
    fn time_window_forgets_expired_buckets() {
        // 4 buckets of 1 ms.
        let window = TimeWindow::new(4, 1000);
        window.record(FAIL, 0);
        window.record(OK, 1500);
        assert_eq!(
            window.totals(),
            Totals {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        // At 4 ms the first bucket (0..1 ms) has left; 1..2 ms is still in.
        let totals = window.record(OK, 4000);
        assert_eq!(
            totals,
            Totals {
                calls: 2,
                failures: 0,
                slow: 0
            }
        );
        // Long idle: everything is gone, even buckets nobody wrote again.
        let totals = window.record(SLOW, 60_000);
        assert_eq!(
            totals,
            Totals {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
    }

    #[test]
    fn time_window_ignores_calls_older_than_the_window() {
        let window = TimeWindow::new(2, 1000);
        window.record(OK, 5000);
        // A late report from epoch 1, whose bucket now holds epoch 5.
        window.record(FAIL, 1000);
        assert_eq!(window.totals().failures, 0);
        assert_eq!(window.totals().calls, 1);
    }

    #[test]
    fn time_window_tags_wrap() {
        let window = TimeWindow::new(3, 1);
        let far = (1u64 << TAG_BITS) * 3;
        window.record(FAIL, far - 1);
        window.record(FAIL, far);
        window.record(OK, far + 1);
        assert_eq!(window.totals().failures, 2);
        assert_eq!(window.totals().calls, 3);
    }
}
