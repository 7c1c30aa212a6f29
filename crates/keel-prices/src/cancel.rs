//! A price source that a caller can stop from another thread: the run ends at the next block
//! and the caller, which asked for the stop, discards what it returned (an interrupted notebook
//! cell, a cancelled sweep). Stopping is the source's business, so no engine needs a flag.

use crate::{PriceSource, Tick};
use std::sync::atomic::{AtomicBool, Ordering};

/// Yields `inner`'s blocks until `stop` is set, then ends the path.
pub struct Cancellable<'a, S> {
    inner: S,
    stop: &'a AtomicBool,
}

impl<'a, S: PriceSource> Cancellable<'a, S> {
    /// Wrap `inner` (a source, a `Box` of one or a `&mut` to one); setting `stop` ends it at the
    /// next block.
    pub fn new(inner: S, stop: &'a AtomicBool) -> Self {
        Cancellable { inner, stop }
    }
}

impl<S: PriceSource> PriceSource for Cancellable<'_, S> {
    fn start_time(&self) -> u64 {
        self.inner.start_time()
    }

    fn start_price(&self) -> f64 {
        self.inner.start_price()
    }

    fn next_tick(&mut self) -> Option<Tick> {
        if self.stop.load(Ordering::Relaxed) { None } else { self.inner.next_tick() }
    }

    fn len_hint(&self) -> Option<u64> {
        self.inner.len_hint()
    }
}

/// A reference to a source, or a box of one, is a source.
macro_rules! forward {
    ($($ty:ty),*) => {$(
        impl<T: PriceSource + ?Sized> PriceSource for $ty {
            fn start_time(&self) -> u64 {
                (**self).start_time()
            }

            fn start_price(&self) -> f64 {
                (**self).start_price()
            }

            fn next_tick(&mut self) -> Option<Tick> {
                (**self).next_tick()
            }

            fn len_hint(&self) -> Option<u64> {
                (**self).len_hint()
            }
        }
    )*};
}

forward!(&mut T, Box<T>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixedPath;

    #[test]
    fn a_set_flag_ends_the_path_at_the_next_block() {
        let stop = AtomicBool::new(false);
        let mut s = Cancellable::new(FixedPath::new(0, 12, vec![1.0, 2.0, 3.0, 4.0]), &stop);
        assert_eq!(s.next_tick().map(|t| t.price), Some(2.0));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(s.next_tick(), None);
        assert_eq!(s.len_hint(), Some(3));
    }
}
