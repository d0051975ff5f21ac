//! A running node: start-up and the application-facing [`Node`].
//!
//! This module owns the node's life cycle: building crypto, transport configuration and the
//! processor from a [`NodeConfig`], the state it shares with its handles and driver
//! (`shared.rs`: the send budget, the last regular configuration, a copy of the group view),
//! spawning the driver (`driver.rs`, the protocol loop around the engine), shutting it down
//! within a bounded time, and answering queries ([`NodeStats`], from `stats.rs`).
//!
//! Nothing is persisted to disk. What Corosync persists is derived from the wall clock
//! instead: the processor's starting ring sequence number and first message number, and the
//! crypto boot id, are the Unix time in microseconds, so a restarted node numbers its rings and
//! frames above those of its previous run (as long as the clock does not step back by more
//! than the downtime).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Notify;
use totem::{Processor, Start};

use crate::budget::SendBudget;
use crate::command::{command_queue, Command, CommandSender};
use crate::config::{NodeConfig, Transport as TransportKind};
use crate::crypto::{self, Cipher, KeyError, Opener, SealError, Sealer};
use crate::driver::Driver;
use crate::event::{EvsError, HandleId, NodeId, RingId};
use crate::groups::{self, GroupView};
use crate::handle::{Handle, DEFAULT_QUEUE_CAPACITY};
use crate::queue::EventQueue;
use crate::runtime::Runtime;
use crate::shared::Shared;
pub use crate::stats::{CapturedFrame, NodeStats};
use crate::transport::{self, TransportConfig};

/// How long `Node::start` waits for the driver to bind its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Node::shutdown` (and drop) waits for the driver to send its leave and stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `Node::stats` waits for the driver's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a node could not start.
#[derive(Debug)]
pub enum NodeError {
    /// The authkey could not be loaded.
    Key(KeyError),
    /// The frame sealer could not be created.
    Seal(SealError),
    /// The protocol configuration was refused by the processor.
    Protocol(totem::ConfigError),
    /// Sockets could not be bound (address in use, no such interface, ...), or the runtime
    /// failed.
    Io(io::Error),
    /// Something else about the configuration.
    Config(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Key(e) => write!(f, "authkey: {e}"),
            NodeError::Seal(e) => write!(f, "crypto: {e}"),
            NodeError::Protocol(e) => write!(f, "totem configuration: {e:?}"),
            NodeError::Io(e) => write!(f, "transport: {e}"),
            NodeError::Config(e) => write!(f, "configuration: {e}"),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeError::Key(e) => Some(e),
            NodeError::Seal(e) => Some(e),
            NodeError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NodeError> for EvsError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Io(e) => EvsError::Io(e),
            other => EvsError::Config(other.to_string()),
        }
    }
}

/// Microseconds since the Unix epoch, strictly increasing within this process (two nodes
/// started in the same microsecond still get distinct boots).
fn unix_micros() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

fn transport_config(config: &NodeConfig) -> TransportConfig {
    match config.transport() {
        TransportKind::Udpu => {
            let members = config
                .members()
                .iter()
                .map(|m| (m.node_id, m.address))
                .collect();
            let mut t = TransportConfig::udpu(config.bind(), config.port(), members);
            t.interface = config.interface().map(str::to_owned);
            t
        }
        TransportKind::Multicast => {
            let group = config.multicast_address().unwrap_or_else(|| {
                transport::derive_multicast_group(config.cluster_name(), config.bind().is_ipv6())
            });
            let mut t = TransportConfig::multicast(config.bind(), group);
            t.port = config.port();
            t.mode = transport::Mode::Multicast {
                group,
                ttl: u32::from(config.multicast_ttl()),
                loopback: true,
            };
            t.interface = config.interface().map(str::to_owned);
            t
        }
    }
}

/// A running node: one Totem processor driven on a [`Runtime`], with any number of
/// [`Handle`]s. Dropping it shuts it down ([`Node::shutdown`]).
pub struct Node {
    id: NodeId,
    local_addr: SocketAddr,
    cmd: CommandSender,
    shared: Arc<Shared>,
    runtime: Runtime,
    next_handle: AtomicU32,
    stopped: AtomicBool,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node on `runtime`: loads the authkey (unless crypto is `none`), binds the
    /// sockets (on the runtime thread), and starts the driver, which immediately begins a
    /// membership round (it forms a ring alone or with the nodes it hears).
    pub fn start(config: &NodeConfig, runtime: &Runtime) -> Result<Node, NodeError> {
        let me = config.node_id();
        let boot = unix_micros();
        let (sealer, opener) = match (config.crypto(), config.authkey()) {
            (Cipher::None, _) => (
                Sealer::without_crypto(me, boot).map_err(NodeError::Seal)?,
                Opener::without_crypto(),
            ),
            (cipher, Some(path)) => {
                let key = crypto::load_authkey(path).map_err(NodeError::Key)?;
                let cluster = config.cluster_name();
                (
                    Sealer::new(&key, cipher, cluster, me, boot).map_err(NodeError::Seal)?,
                    Opener::new(&key, cipher, cluster),
                )
            }
            (cipher, None) => {
                return Err(NodeError::Config(format!(
                    "crypto {cipher} needs an authkey"
                )))
            }
        };
        let mut seed = [0u8; 8];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| NodeError::Seal(SealError::Random))?;
        let start = Start {
            ring_seq: boot,
            first_msg_no: boot,
            seed: u64::from_le_bytes(seed),
        };
        let epoch = tokio::time::Instant::now();
        // The setting bounds the application's data; the processor carries it with its group
        // header, so it accepts (and reassembles) messages that much larger.
        let mut totem_config = config.totem();
        totem_config.max_message_size = groups::ring_message_size(config.max_message_size());
        totem_config.send_queue_bytes = totem_config
            .send_queue_bytes
            .max(totem_config.max_message_size);
        let processor = Processor::new(totem_config.clone(), me, start, totem::Instant::ZERO)
            .map_err(NodeError::Protocol)?;
        let shared = Arc::new(Shared {
            node_id: me,
            max_payload: config.max_message_size(),
            max_message_size: totem_config.max_message_size,
            budget: SendBudget::new(config.send_queue_bytes()),
            membership: Mutex::new((RingId::default(), Vec::new())),
            view: Mutex::new(GroupView::default()),
            running: AtomicBool::new(true),
            refill: Arc::new(Notify::new()),
            delivery_buffer: config.delivery_buffer(),
            window_size: config.totem_ref().window_size,
            max_packet_size: config.totem_ref().max_packet_size,
        });
        let (cmd_tx, cmd_rx) = command_queue();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let tcfg = transport_config(config);
        let multicast = config.transport() == TransportKind::Multicast;
        let driver_shared = shared.clone();
        runtime.tokio_handle().spawn(async move {
            // Bound here, on the runtime thread, so the sockets live in its network namespace.
            let transport = match transport::Transport::bind(tcfg) {
                Ok(t) => t,
                Err(e) => {
                    driver_shared.running.store(false, Ordering::Release);
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(transport.local_addr()));
            Driver::new(
                processor,
                transport,
                multicast,
                sealer,
                opener,
                cmd_rx,
                driver_shared,
                epoch,
            )
            .run()
            .await;
        });
        let local_addr = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(NodeError::Io(e)),
            Err(_) => {
                return Err(NodeError::Io(io::Error::other(
                    "the runtime did not start the node (runtime stopped or blocked)",
                )))
            }
        };
        tracing::info!(node = me, %local_addr, crypto = %config.crypto(), "node started");
        Ok(Node {
            id: me,
            local_addr,
            cmd: cmd_tx,
            shared,
            runtime: runtime.clone(),
            next_handle: AtomicU32::new(1),
            stopped: AtomicBool::new(false),
        })
    }

    /// Starts a node on a runtime of its own (one background thread for this node).
    pub fn start_standalone(config: &NodeConfig) -> Result<Node, NodeError> {
        let runtime = Runtime::new().map_err(NodeError::Io)?;
        Node::start(config, &runtime)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the node sends from (its unicast socket).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The runtime this node runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Whether the driver is running (false after shutdown, or if it stopped).
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// A new handle with the default queue capacity ([`DEFAULT_QUEUE_CAPACITY`] events).
    pub fn handle(&self) -> Result<Handle, EvsError> {
        self.handle_with_capacity(DEFAULT_QUEUE_CAPACITY)
    }

    /// A new handle whose queue holds at most `capacity` events; more wait in the node's
    /// delivery buffer (see the overflow policy in [`crate::handle`]). Its first event is the
    /// current regular configuration, if the node has one.
    pub fn handle_with_capacity(&self, capacity: usize) -> Result<Handle, EvsError> {
        if !self.is_running() {
            return Err(EvsError::Closed);
        }
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(EventQueue::new(capacity, self.shared.refill.clone())?);
        let efd = queue.eventfd().ok_or(EvsError::Closed)?; // always there in a new queue
        self.cmd
            .send(Command::Register {
                id,
                queue: queue.clone(),
            })
            .map_err(|_| EvsError::Closed)?;
        Ok(Handle::new(
            id,
            self.cmd.clone(),
            self.shared.clone(),
            queue,
            efd,
        ))
    }

    /// This node's id and the members of the last regular configuration (empty before the
    /// first ring is installed).
    pub fn membership(&self) -> (NodeId, Vec<NodeId>) {
        (self.id, self.shared.members().1)
    }

    /// Ring id of the last regular configuration (`RingId::default()` before the first).
    pub fn ring_id(&self) -> RingId {
        self.shared.members().0
    }

    /// The whole replicated group view: every group with its `(node, handle)` members.
    pub fn group_view(&self) -> BTreeMap<Bytes, Vec<(NodeId, HandleId)>> {
        self.shared
            .view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot()
    }

    /// A snapshot of the node's counters (asks the driver; waits a bounded time).
    pub fn stats(&self) -> Result<NodeStats, EvsError> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.cmd
            .send(Command::Stats { reply: tx })
            .map_err(|_| EvsError::Closed)?;
        rx.recv_timeout(QUERY_TIMEOUT).map_err(|e| match e {
            std_mpsc::RecvTimeoutError::Timeout => EvsError::Timeout,
            std_mpsc::RecvTimeoutError::Disconnected => EvsError::Closed,
        })
    }

    /// Test hook: from now on the driver keeps copies of the last `limit` sealed frames it
    /// sends; returns those kept so far (and clears them). `limit` 0 stops capturing.
    #[doc(hidden)]
    pub fn debug_capture(&self, limit: usize) -> Vec<CapturedFrame> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        if self
            .cmd
            .send(Command::DebugCapture { limit, reply: tx })
            .is_err()
        {
            return Vec::new();
        }
        rx.recv_timeout(QUERY_TIMEOUT).unwrap_or_default()
    }

    /// Fault injection for tests and demonstrations: from now on the node drops every
    /// authenticated frame sent by a node in `from` (an empty list ends the isolation).
    /// Isolating two sets of nodes from each other on both sides gives a partition without
    /// touching the network (no root, no firewall); the ring reacts exactly as to a real one.
    /// Dropped frames are counted (`NodeStats::isolated_dropped`).
    pub fn isolate_from(&self, from: &[NodeId]) {
        let _ = self.cmd.send(Command::Isolate {
            from: from.to_vec(),
        });
    }

    /// Fault injection for tests: from now on drop each received datagram with probability
    /// `percent`/100 (pseudo-random, before authentication, as a lossy network would; capped
    /// at 100; 0 ends it). Counted in `NodeStats::loss_injected`.
    pub fn set_receive_loss(&self, percent: u8) {
        let _ = self.cmd.send(Command::ReceiveLoss {
            percent: percent.min(100),
        });
    }

    /// Leaves the ring (the others see this node in a transitional configuration's `left`
    /// without waiting for a token timeout), stops the driver and ends every handle's stream
    /// with [`EvsError::Closed`] after its queued events. Waits at most a few seconds.
    /// Idempotent; also done on drop.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let (tx, rx) = std_mpsc::sync_channel(1);
        if self.cmd.send(Command::Shutdown { ack: tx }).is_err() {
            return;
        }
        if self.runtime.is_current_thread() {
            // Called from a task on the runtime: waiting here would block the driver itself.
            return;
        }
        if rx.recv_timeout(SHUTDOWN_TIMEOUT).is_err() && self.is_running() {
            tracing::warn!(
                node = self.id,
                "driver did not acknowledge shutdown in time"
            );
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}
