//! Rate limits: one budget for the whole gateway, checked before any work, and one per
//! holder, charged only for calls the verifier allowed (so nobody can spend another
//! holder's budget with chains they cannot use). A minute's worth is the burst.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Most holders tracked at once; beyond it, the ones with full buckets are forgotten.
const MAX_HOLDERS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(per_minute),
            at: now,
        }
    }

    fn refill(&mut self, per_minute: u32, now: Instant) {
        let rate = f64::from(per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(per_minute));
        self.at = now;
    }

    /// Takes one token if there is one.
    fn take(&mut self, per_minute: u32, now: Instant) -> bool {
        self.refill(per_minute, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The gateway's budgets; a rate of 0 per minute means no limit.
#[derive(Debug)]
pub(crate) struct Limits {
    total_per_minute: u32,
    total: Mutex<Bucket>,
    holder_per_minute: u32,
    holders: Mutex<HashMap<String, Bucket>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Limits {
    pub(crate) fn new(total_per_minute: u32, holder_per_minute: u32) -> Limits {
        Limits {
            total_per_minute,
            total: Mutex::new(Bucket::full(total_per_minute, Instant::now())),
            holder_per_minute,
            holders: Mutex::new(HashMap::new()),
        }
    }

    /// Charges one request to the gateway's budget.
    pub(crate) fn request(&self) -> bool {
        self.total_per_minute == 0 || lock(&self.total).take(self.total_per_minute, Instant::now())
    }

    /// Charges one allowed call to `holder`'s budget.
    pub(crate) fn call(&self, holder: &str) -> bool {
        let rate = self.holder_per_minute;
        if rate == 0 {
            return true;
        }
        let now = Instant::now();
        let mut holders = lock(&self.holders);
        if holders.len() >= MAX_HOLDERS && !holders.contains_key(holder) {
            holders.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < f64::from(rate)
            });
        }
        holders
            .entry(holder.to_owned())
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_run_out_per_holder_and_zero_means_unlimited() {
        let limits = Limits::new(0, 2);
        assert!(limits.call("a") && limits.call("a"));
        assert!(!limits.call("a"), "a's third call in the same minute");
        assert!(limits.call("b"), "b has its own budget");
        assert!((0..1000).all(|_| limits.request()), "no total limit");
        let total = Limits::new(3, 0);
        assert!(total.request() && total.request() && total.request());
        assert!(!total.request());
        assert!((0..1000).all(|_| total.call("a")), "no per-holder limit");
    }
}
