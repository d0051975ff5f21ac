//! The node-wide send budget ([`SendBudget`]): what turns a full send queue into
//! backpressure.
//!
//! The policy is in the public docs of `crate::handle` ("Send backpressure").

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::event::EvsError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct BudgetState {
    used: usize,
    closed: bool,
    waiters: usize,
}

/// The node-wide send budget (see the module docs).
pub(crate) struct SendBudget {
    state: Mutex<BudgetState>,
    cond: Condvar,
    cap: usize,
}

impl SendBudget {
    pub(crate) fn new(cap: usize) -> SendBudget {
        SendBudget {
            state: Mutex::new(BudgetState {
                used: 0,
                closed: false,
                waiters: 0,
            }),
            cond: Condvar::new(),
            cap,
        }
    }

    /// Charges `cost`, waiting up to `wait` for room (`None`: do not wait).
    pub(crate) fn acquire(&self, cost: usize, wait: Option<Duration>) -> Result<(), EvsError> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut st = lock(&self.state);
        loop {
            if st.closed {
                return Err(EvsError::Closed);
            }
            if st.used == 0 || st.used.saturating_add(cost) <= self.cap {
                st.used += cost;
                return Ok(());
            }
            let Some(d) = deadline else {
                return Err(EvsError::TryAgain);
            };
            let now = Instant::now();
            if now >= d {
                return Err(EvsError::Timeout);
            }
            st.waiters += 1;
            st = self
                .cond
                .wait_timeout(st, d - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            st.waiters -= 1;
        }
    }

    /// Charges `cost` whatever the budget (control messages, which must not fail).
    pub(crate) fn force(&self, cost: usize) {
        lock(&self.state).used += cost;
    }

    /// Refunds `cost` and wakes blocked senders.
    pub(crate) fn release(&self, cost: usize) {
        let mut st = lock(&self.state);
        st.used = st.used.saturating_sub(cost);
        if st.waiters > 0 {
            self.cond.notify_all();
        }
    }

    /// The node stopped: every waiting and later acquire fails with `Closed`.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.cond.notify_all();
    }

    pub(crate) fn used(&self) -> usize {
        lock(&self.state).used
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
}
