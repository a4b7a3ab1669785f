//! The event trace of a run: a bounded ring of the latest lines (the simulator's own
//! events and ferry's log lines, through a `log` logger installed once), printed when a
//! seed fails, and a running digest of every line, so a test can prove that a seed
//! replays bit for bit.

use std::cell::RefCell;
use std::collections::VecDeque;

/// Lines kept for the failure report.
const RING: usize = 600;

struct Ring {
    lines: VecDeque<String>,
    digest: u64,
    /// The virtual time of the run, in ms since its start, for ferry's log lines.
    now_ms: u64,
}

thread_local! {
    static TRACE: RefCell<Ring> = const {
        RefCell::new(Ring { lines: VecDeque::new(), digest: 0xcbf2_9ce4_8422_2325, now_ms: 0 })
    };
}

/// Starts a new run's trace.
pub fn reset() {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        t.lines.clear();
        t.digest = 0xcbf2_9ce4_8422_2325;
        t.now_ms = 0;
    });
}

/// Sets the virtual time shown on the following lines.
pub fn set_now(ms: u64) {
    TRACE.with(|t| t.borrow_mut().now_ms = ms);
}

/// Adds a line.
pub fn line(text: String) {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        let text = format!("{:>9}ms {text}", t.now_ms);
        for byte in text.bytes() {
            t.digest = (t.digest ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        if t.lines.len() == RING {
            t.lines.pop_front();
        }
        t.lines.push_back(text);
    });
}

/// The digest of every line since [`reset`].
pub fn digest() -> u64 {
    TRACE.with(|t| t.borrow().digest)
}

/// The latest lines, oldest first.
pub fn dump() -> String {
    TRACE.with(|t| {
        let t = t.borrow();
        let mut out = String::new();
        for l in &t.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    })
}

macro_rules! trace {
    ($($arg:tt)*) => { $crate::trace::line(format!($($arg)*)) };
}
pub(crate) use trace;

/// Routes ferry's log lines into the trace of the thread's run.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        line(format!("ferry {} {}", record.level(), record.args()));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger (once per process); `debug` shows ferry's debug lines too.
pub fn install_logger(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
}
