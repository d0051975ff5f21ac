//! The command queue from application threads (the node and its handles) to the driver.
//!
//! This module owns the queue, an unbounded FIFO of [`Command`]s under a mutex, the command
//! type itself, and the
//! rule for when a command wakes the driver. It replaces a tokio channel, which wakes the
//! driver for the first command after every time it went idle: a sender that multicasts in
//! bursts (refilled by the send budget once per token visit) then costs the driver thread a
//! wake-up, a turn and a sleep per few messages, all competing for the CPU with the token's
//! own path.
//!
//! # When the driver is woken
//!
//! * Every command other than a plain multicast ([`Command::Submit`] without a group intent)
//!   wakes it: registrations, joins and leaves, closes, queries and shutdown are rare, and
//!   their callers may wait for the answer.
//! * A multicast wakes it only if the driver asked for that when it last went idle
//!   ([`CommandReceiver::idle`]), which it does when its processor has nothing left to send. If
//!   the processor still holds messages, this node will get the token again (the ring does not
//!   go quiet while a member has something to send), and the driver takes every queued command
//!   *before* the packets of each turn, so the new messages are in the processor when the
//!   token is.
//!
//! Dropping the last [`CommandSender`] wakes the driver, which then shuts the node down (as a
//! closed channel did). Dropping the [`CommandReceiver`] (the driver stopped) drops every
//! queued command and makes later sends fail, so nobody waits for an answer that cannot come.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use std::sync::mpsc as std_mpsc;

use evs_engine::{Intent, Submission};

use crate::event::{HandleId, NodeId};
use crate::queue::EventQueue;
use crate::stats::{CapturedFrame, NodeStats};

/// Requests from application threads to the driver.
pub(crate) enum Command {
    Register {
        id: HandleId,
        queue: Arc<EventQueue>,
    },
    /// A message for the ring (see [`Submission`]).
    Submit(Submission),
    Close {
        id: HandleId,
    },
    Stats {
        reply: std_mpsc::SyncSender<NodeStats>,
    },
    DebugCapture {
        limit: usize,
        reply: std_mpsc::SyncSender<Vec<CapturedFrame>>,
    },
    Shutdown {
        ack: std_mpsc::SyncSender<()>,
    },
    Isolate {
        from: Vec<NodeId>,
    },
    ReceiveLoss {
        percent: u8,
    },
}

struct State {
    commands: VecDeque<Command>,
    /// Live senders; at zero the driver shuts the node down.
    senders: usize,
    /// The receiver was dropped.
    closed: bool,
    /// The driver went idle with nothing to send: the next multicast must wake it.
    wake_on_submit: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Holds a permit when a wake-up came while the driver was busy, so none is lost.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new queue: its first sender and its receiver.
pub(crate) fn command_queue() -> (CommandSender, CommandReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            commands: VecDeque::new(),
            senders: 1,
            closed: false,
            wake_on_submit: true,
        }),
        wake: Notify::new(),
    });
    (
        CommandSender {
            shared: shared.clone(),
        },
        CommandReceiver { shared },
    )
}

/// The sending side; cloned for every handle.
pub(crate) struct CommandSender {
    shared: Arc<Shared>,
}

/// The driver is gone; the command comes back.
pub(crate) struct Disconnected(#[allow(dead_code)] pub(crate) Command);

impl std::fmt::Debug for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Disconnected")
    }
}

impl CommandSender {
    /// Queues `cmd`, waking the driver when it needs it (see the module docs). Never blocks
    /// beyond the queue lock, which the driver holds only to take commands.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Disconnected> {
        let plain_submit = matches!(
            cmd,
            Command::Submit(Submission {
                intent: Intent::None,
                ..
            })
        );
        let mut st = self.shared.lock();
        if st.closed {
            return Err(Disconnected(cmd));
        }
        st.commands.push_back(cmd);
        let wake = !plain_submit || st.wake_on_submit;
        if wake {
            st.wake_on_submit = false;
        }
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl Clone for CommandSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        CommandSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for CommandSender {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.wake.notify_one();
        }
    }
}

/// What [`CommandReceiver::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// This many commands were moved into the buffer (possibly 0).
    Some(usize),
    /// The queue is empty and every sender is gone.
    Disconnected,
}

/// The driver's side.
pub(crate) struct CommandReceiver {
    shared: Arc<Shared>,
}

impl CommandReceiver {
    /// Moves up to `max` commands, oldest first, into `out`.
    pub(crate) fn take(&self, max: usize, out: &mut Vec<Command>) -> Taken {
        let mut st = self.shared.lock();
        if st.commands.is_empty() && st.senders == 0 {
            return Taken::Disconnected;
        }
        let n = max.min(st.commands.len());
        out.extend(st.commands.drain(..n));
        Taken::Some(n)
    }

    /// Called by the driver before it waits: false if commands are already queued (it must
    /// not wait). Otherwise records whether a plain multicast should wake it
    /// (`wake_on_submit`: its processor has nothing to send).
    pub(crate) fn idle(&self, wake_on_submit: bool) -> bool {
        let mut st = self.shared.lock();
        if !st.commands.is_empty() || st.senders == 0 {
            return false;
        }
        st.wake_on_submit = wake_on_submit;
        true
    }

    /// Completes when a command that must wake the driver was sent, or the last sender went
    /// away, since the last completion (possibly before this call).
    pub(crate) async fn woken(&self) {
        self.shared.wake.notified().await
    }
}

impl Drop for CommandReceiver {
    fn drop(&mut self) {
        let stale = {
            let mut st = self.shared.lock();
            st.closed = true;
            std::mem::take(&mut st.commands)
        };
        // Dropped outside the lock: a command may own reply channels and queues.
        drop(stale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Guarantee;
    use bytes::Bytes;
    use std::time::Duration;

    fn submit() -> Command {
        Command::Submit(Submission {
            data: Bytes::from_static(b"x"),
            guarantee: Guarantee::Agreed,
            cost: 1,
            intent: Intent::None,
        })
    }

    fn woken_now(rx: &CommandReceiver) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), rx.woken())
                .await
                .is_ok()
        })
    }

    #[test]
    fn multicasts_wake_the_driver_only_when_it_asked() {
        let (tx, rx) = command_queue();
        let mut out = Vec::new();
        // Fresh queue: the first multicast wakes, the following ones do not.
        tx.send(submit()).unwrap();
        tx.send(submit()).unwrap();
        assert!(woken_now(&rx));
        assert!(!woken_now(&rx));
        assert_eq!(rx.take(1, &mut out), Taken::Some(1));
        assert!(!rx.idle(true), "a command is still queued");
        assert_eq!(rx.take(10, &mut out), Taken::Some(1));
        // Idle with messages still to send: multicasts do not wake, other commands do.
        assert!(rx.idle(false));
        tx.send(submit()).unwrap();
        assert!(!woken_now(&rx));
        tx.send(Command::Close { id: 1 }).unwrap();
        assert!(woken_now(&rx));
        assert_eq!(rx.take(10, &mut out), Taken::Some(2));
        // Idle with nothing to send: the next multicast wakes.
        assert!(rx.idle(true));
        tx.send(submit()).unwrap();
        assert!(woken_now(&rx));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn last_sender_gone_wakes_and_disconnects() {
        let (tx, rx) = command_queue();
        let tx2 = tx.clone();
        tx.send(submit()).unwrap();
        drop(tx);
        assert!(woken_now(&rx));
        drop(tx2);
        let mut out = Vec::new();
        assert_eq!(rx.take(10, &mut out), Taken::Some(1));
        assert_eq!(rx.take(10, &mut out), Taken::Disconnected);
        assert!(!rx.idle(true));
    }

    #[test]
    fn sends_fail_once_the_driver_is_gone() {
        let (tx, rx) = command_queue();
        tx.send(submit()).unwrap();
        drop(rx);
        assert!(tx.send(submit()).is_err());
    }
}
