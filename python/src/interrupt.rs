//! Long calls off the GIL and stoppable with Ctrl-C: the work runs on its own thread while the
//! calling thread waits without the GIL and checks Python's signals every 50 ms. On an
//! interrupt it raises the stop flag the work was given (its price sources end at the next
//! block), waits for the thread to return, and raises `KeyboardInterrupt`; nothing half-done is
//! returned.

use pyo3::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

/// Run `work(stop)` on a new thread without holding the GIL; its error becomes a `KeelError`.
pub fn run<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&AtomicBool) -> anyhow::Result<T> + Send + 'static,
{
    run_with(py, work, |_| Ok(()))
}

/// [`run`], calling `tick` with the GIL about every 50 ms while the work runs (progress).
pub fn run_with<T, F>(py: Python<'_>, work: F, tick: impl Fn(Python<'_>) -> PyResult<()>) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&AtomicBool) -> anyhow::Result<T> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel();
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name("keel".into())
        .spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&flag)));
            let _ = tx.send(out);
        })
        .map_err(|e| crate::keel_err(format!("cannot start a worker thread: {e}")))?;
    let mut rx = rx;
    loop {
        // the receiver moves into the GIL-free closure and back (it is Send, not Sync)
        let (back, got) = py.detach(move || {
            let got = rx.recv_timeout(Duration::from_millis(50));
            (rx, got)
        });
        rx = back;
        match got {
            Ok(out) => {
                let _ = py.detach(|| handle.join());
                return match out {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(crate::keel_err(format!("{e:#}"))),
                    Err(panic) => {
                        let why = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("unknown");
                        Err(crate::keel_err(format!(
                            "keel stopped on an internal error (a bug; please report it): {why}"
                        )))
                    }
                };
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals().and_then(|()| tick(py)) {
                    stop.store(true, Ordering::Relaxed);
                    let _ = py.detach(|| handle.join());
                    return Err(interrupt);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(crate::keel_err("keel's worker thread ended without a result"));
            }
        }
    }
}
