//! UDP transport: IP multicast (default) or a unicast member list ("udpu"), non-blocking,
//! batched, with send failures counted instead of returned.
//!
//! The driver task owns one [`Transport`] per node and calls it without ever blocking:
//! [`Transport::readable`] is the only `async` method; everything else returns at once.
//!
//! # Usage
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use evs::transport::*;
//! use std::net::{IpAddr, Ipv4Addr};
//!
//! let bind = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
//! let group = derive_multicast_group("my-cluster", false);
//! let mut t = Transport::bind(TransportConfig::multicast(bind, group))?;
//! let mut batch = RecvBatch::new(32);
//! loop {
//!     t.readable().await?;
//!     t.recv_batch(&mut batch)?;
//!     // Feed datagrams in the order given (multicasts come before tokens, see below).
//!     for (from, frame) in batch.iter_mut() {
//!         // opener.open(frame) decrypts in place; then, for an authenticated `sender`:
//!         //   t.learn(sender, from);  Bytes::copy_from_slice(payload) -> the core
//!         # let _ = (from, frame);
//!     }
//!     # t.learn(2, "192.168.1.11:5405".parse().unwrap());
//!     t.send_all(b"sealed frame");
//!     t.send_to(2, b"sealed token");
//! }
//! # }
//! ```
//!
//! # Which socket receives what
//!
//! * **udpu**: one socket bound to `bind:port`. It sends every datagram (one unicast per other
//!   member for [`Transport::send_all`]) and receives everything. Nodes on one host may differ by
//!   address or by port.
//! * **multicast**: two sockets.
//!   - The *unicast socket*, bound to `bind:port`, sends everything: multicasts to `group:port`
//!     and tokens to one node. Because every multicast leaves from it, receivers see a source
//!     address that is unique per node, which is what [`Transport::learn`] records and
//!     [`Transport::send_to`] later uses for tokens. It receives only unicasts (tokens, commit
//!     tokens), since it is bound to a unicast address and has not joined the group. When `bind`
//!     is the unspecified address, `IP_MULTICAST_ALL` is switched off so it still sees no
//!     multicasts (Linux otherwise delivers every group joined by *any* socket to a wildcard
//!     socket).
//!   - The *group socket*, bound to `group:port` with `SO_REUSEADDR` and joined to the group on
//!     the node's interface, receives all multicasts of the cluster except our own looped-back
//!     copies: a socket filter drops datagrams from our own unicast address in the kernel (IPv4
//!     with a specific bind address; elsewhere, or with
//!     [`TransportConfig::receive_own_multicasts`], they arrive and the driver drops them by
//!     node id after authentication). Binding to the group
//!     address rather than the wildcard keeps unicasts to the same port away from it.
//!     `SO_REUSEADDR` lets every node on the host bind it: the kernel hands each multicast to all
//!     such sockets. `SO_REUSEPORT` is deliberately not used: it adds nothing for multicast
//!     (Linux also fans multicast out to every member of a reuseport group) but would let a
//!     same-user process share the port silently.
//!
//!   All nodes of a multicast cluster use the same `port` (the group port), so several nodes on
//!   one host need different bind addresses (127.0.0.1, 127.0.0.2, ...). The unicast socket is
//!   bound without `SO_REUSEADDR`, so a second node on the same `bind:port` fails with
//!   `AddrInUse` instead of silently stealing half the tokens.
//!
//! Multicast options: `IP_MULTICAST_IF` / `IPV6_MULTICAST_IF` pick the bind address's interface
//! (or `interface`), so multicasts leave where the group was joined; `IP_MULTICAST_TTL` /
//! `IPV6_MULTICAST_HOPS` is `ttl`; `IP_MULTICAST_LOOP` must stay on when several nodes share a
//! host (the sender's own host only gets a copy through the loop).
//!
//! Loopback, as observed on Linux 6.x: IPv4 nodes on 127.0.0.x hear each other even though the
//! host's `lo` usually lacks the MULTICAST flag (the loop copy does not need it). IPv6
//! multicast over `lo` is not delivered at all, so IPv6 nodes on one host need a real (or
//! veth) interface.
//!
//! # Receive order
//!
//! [`Transport::recv_batch`] reads the group socket before the unicast socket: a token read
//! before the multicasts it covers makes the core ask for retransmissions it does not need
//! (totem-reference.md §8.2, "drain the socket before the token"). So that a multicast flood
//! cannot starve tokens, an eighth of the batch (at least one slot) is kept for the unicast
//! socket before the group socket may fill the rest.
//!
//! # Batching
//!
//! Receiving uses `recvmmsg` (up to 32 datagrams per system call) and UDP GRO through
//! `quinn-udp`, whose safe API wraps both. Sending uses UDP GSO where the kernel has it: a run
//! of datagrams of equal size (the last may be shorter) to one destination leaves in one
//! `sendmsg`. Totem emits exactly such runs: the token holder sends up to `max_messages`
//! packets packed to `max_packet_size`, and udpu sends each of them to every member. Runs of
//! one datagram are sent as they are, without a copy; longer runs are copied into one
//! contiguous buffer (a memcpy is far cheaper than the system calls it saves). `quinn-udp` has
//! no `sendmmsg`; datagrams that GSO cannot merge are sent one `sendmsg` each.
//!
//! One quirk: after a `sendmsg` fails with `EIO` or `EINVAL`, `quinn-udp` turns GSO off for the
//! socket for good (it takes them for a device that cannot do GSO). Linux also returns `EINVAL`
//! for a destination the bind address cannot reach (a udpu member on another network while
//! bound to 127.0.0.1); then sending still works, one system call per datagram.
//!
//! `quinn-udp` also sets `IP_MTU_DISCOVER = IP_PMTUDISC_PROBE` / `IPV6_DONTFRAG`: datagrams are
//! never IP-fragmented, and one larger than the interface MTU fails locally with `EMSGSIZE`
//! (counted as [`SendErrors::too_big`]). That is the behaviour totem-reference.md §8.4 asks for:
//! a wrong `max_packet_size` shows up in the statistics rather than as fragment loss.
//!
//! # Failures
//!
//! Sends never return errors and never panic: every failed datagram is counted by kind in
//! [`TransportStats::send_errors`] and the protocol repairs the loss. A send that finds the
//! socket buffer full (`EAGAIN`) drops the datagram (counted as `would_block`); the driver must
//! not wait for room, since the token would stall.
//!
//! # Unknown destinations
//!
//! [`Transport::send_to`] resolves node ids through the udpu member list, or in multicast mode
//! through the addresses recorded by [`Transport::learn`]. An unknown node is counted as
//! `unknown_destination`; in multicast mode the datagram is then multicast instead (counted as
//! `multicast_fallbacks`) so that a node that has not yet been learned still gets it.
//!
//! **Hazard of that fallback:** every member receives the multicast copy. The totem core (as
//! of this writing) does not check that an ORF token was addressed to it, so a multicast token
//! would be processed by every member that shares the ring id. The fallback is therefore only
//! safe while the driver calls `learn` for every authenticated sender (a node's joins always
//! arrive before it can be anyone's successor, so in practice its address is known), or if the
//! driver/core rejects tokens not meant for this node. [`Transport::set_unknown_destination`]
//! switches to dropping instead. In udpu mode an unknown node is always dropped: there is no
//! one else to ask. To send to itself in multicast mode (a one-node ring), the driver should
//! call `learn(me, transport.local_addr())` once.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::task::Poll;

use bytes::Bytes;
use nix::errno::Errno;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

mod setup;

/// Corosync's default port (`mcastport`).
pub const DEFAULT_PORT: u16 = 5405;

/// Socket buffer size asked for by the convenience constructors (best effort: the kernel caps
/// it at `net.core.rmem_max` / `wmem_max`; the granted size is in [`TransportStats`]).
pub const DEFAULT_SOCKET_BUFFER: usize = 4 << 20;

/// Size of one receive slot of a [`RecvBatch`]: the largest possible UDP datagram (and the
/// largest run GRO may coalesce into one slot) fits, so nothing is ever truncated.
pub const SLOT_SIZE: usize = 1 << 16;

/// Default number of slots of a [`RecvBatch`] (one `recvmmsg` worth).
pub const DEFAULT_BATCH: usize = 32;

const EIO: i32 = Errno::EIO as i32;
const EINVAL: i32 = Errno::EINVAL as i32;

/// Largest GSO run in bytes: a GSO send is one UDP "super-datagram" whose total must still fit
/// the 16-bit IP length (65535 minus IP and UDP headers); stay well clear of it.
const GSO_MAX_BYTES: usize = 64_000;

/// How the transport reaches "everyone".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// IP multicast to `group:port` (default). TTL, loopback configurable.
    Multicast {
        group: IpAddr,
        ttl: u32,
        loopback: bool,
    },
    /// Unicast to every member in the list (networks without multicast). The list includes
    /// this node; sending "to all" skips our own address.
    Udpu { members: Vec<(u32, SocketAddr)> },
}

/// Everything [`Transport::bind`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Local address of this node (its interface). May be unspecified (`0.0.0.0`, `::`), but
    /// then in multicast mode a second node on the same port is not detected, and with IPv6
    /// give `interface` so the group is joined on the right link.
    pub bind: IpAddr,
    /// Unicast port, and in multicast mode also the group port (the same for every node).
    /// 0 picks a free port (useful in tests).
    pub port: u16,
    pub mode: Mode,
    /// Optional interface name for multicast join and send; default: the interface owning
    /// `bind`.
    pub interface: Option<String>,
    /// `SO_RCVBUF` to ask for (0 = leave the system default).
    pub recv_buffer: usize,
    /// `SO_SNDBUF` to ask for (0 = leave the system default).
    pub send_buffer: usize,
    /// Multicast mode: whether the group socket also receives the copies of our own
    /// multicasts that `IP_MULTICAST_LOOP` hands back. Default false: a socket filter drops
    /// them in the kernel (IPv4 with a specific bind address only), which saves queueing,
    /// copying and a receive slot per datagram we send.
    pub receive_own_multicasts: bool,
}

impl TransportConfig {
    /// Multicast on `group:DEFAULT_PORT` from `bind`, TTL 1, loopback on (our own copies
    /// filtered out), 4 MiB buffers.
    pub fn multicast(bind: IpAddr, group: IpAddr) -> TransportConfig {
        TransportConfig {
            bind,
            port: DEFAULT_PORT,
            mode: Mode::Multicast {
                group,
                ttl: 1,
                loopback: true,
            },
            interface: None,
            recv_buffer: DEFAULT_SOCKET_BUFFER,
            send_buffer: DEFAULT_SOCKET_BUFFER,
            receive_own_multicasts: false,
        }
    }

    /// Unicast to `members` (this node included) from `bind:port`, 4 MiB buffers.
    pub fn udpu(bind: IpAddr, port: u16, members: Vec<(u32, SocketAddr)>) -> TransportConfig {
        TransportConfig {
            bind,
            port,
            mode: Mode::Udpu { members },
            interface: None,
            recv_buffer: DEFAULT_SOCKET_BUFFER,
            send_buffer: DEFAULT_SOCKET_BUFFER,
            receive_own_multicasts: false,
        }
    }
}

/// Where one datagram of [`Transport::send_batch`] goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Everyone: the group, or every other udpu member.
    All,
    /// One node, by node id.
    Node(u32),
}

/// What [`Transport::send_to`] does with a node whose address it does not know.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum UnknownDestination {
    /// Multicast the datagram instead (multicast mode only; see the module docs for the hazard).
    #[default]
    Multicast,
    /// Drop it (it is counted either way).
    Drop,
}

/// Failed datagrams by cause. One datagram to one destination counts once.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SendErrors {
    /// `EAGAIN`: the socket send buffer was full.
    pub would_block: u64,
    /// `ENOBUFS`: the kernel or the device queue had no room.
    pub no_buffers: u64,
    /// `EPERM` / `EACCES`: a firewall rule (or policy) refused it.
    pub permission: u64,
    /// `EHOSTUNREACH`, `ENETUNREACH`, `EHOSTDOWN`, `ENETDOWN`: no route or the link is down.
    pub unreachable: u64,
    /// `EMSGSIZE`: larger than the interface MTU allows (fragmentation is off).
    pub too_big: u64,
    /// Anything else; [`TransportStats::last_send_errno`] tells what.
    pub other: u64,
}

impl SendErrors {
    /// All failed datagrams.
    pub fn total(&self) -> u64 {
        self.would_block
            + self.no_buffers
            + self.permission
            + self.unreachable
            + self.too_big
            + self.other
    }
}

/// Counters since [`Transport::bind`], and what the kernel granted.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams handed out by [`Transport::recv_batch`].
    pub datagrams_in: u64,
    pub bytes_in: u64,
    /// `recv_batch` calls that returned at least one datagram.
    pub recv_batches: u64,
    /// Receive system calls that returned data (a `recvmmsg` may return many datagrams).
    pub recv_syscalls: u64,
    /// Receive errors other than "nothing queued".
    pub recv_errors: u64,
    /// Datagrams the kernel accepted (one per destination: udpu "to all" counts N-1).
    pub datagrams_out: u64,
    pub bytes_out: u64,
    /// Send system calls made (a GSO send carries many datagrams).
    pub send_syscalls: u64,
    /// Send system calls that carried more than one datagram through GSO.
    pub gso_sends: u64,
    pub send_errors: SendErrors,
    /// The errno of the most recent failed send, if any.
    pub last_send_errno: Option<i32>,
    /// [`Transport::send_to`] (or `Destination::Node`) for a node without a known address.
    pub unknown_destination: u64,
    /// Of those, how many were multicast instead.
    pub multicast_fallbacks: u64,
    /// `SO_RCVBUF` granted on the receiving socket(s) (Linux reports twice the usable size).
    pub recv_buffer: usize,
    /// `SO_SNDBUF` granted on the sending socket.
    pub send_buffer: usize,
    /// Largest GSO run the kernel supports now (1 = no GSO).
    pub max_gso_segments: usize,
    /// Datagrams GRO may coalesce into one receive slot (1 = no GRO).
    pub gro_segments: usize,
}

#[derive(Default)]
struct Counters {
    datagrams_in: AtomicU64,
    bytes_in: AtomicU64,
    recv_batches: AtomicU64,
    recv_syscalls: AtomicU64,
    recv_errors: AtomicU64,
    datagrams_out: AtomicU64,
    bytes_out: AtomicU64,
    send_syscalls: AtomicU64,
    gso_sends: AtomicU64,
    would_block: AtomicU64,
    no_buffers: AtomicU64,
    permission: AtomicU64,
    unreachable: AtomicU64,
    too_big: AtomicU64,
    other: AtomicU64,
    last_send_errno: AtomicI32,
    unknown_destination: AtomicU64,
    multicast_fallbacks: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// One tokio socket and the `quinn-udp` state that knows its batching capabilities.
struct Sock {
    io: UdpSocket,
    state: UdpSocketState,
}

impl Sock {
    fn new(std: std::net::UdpSocket) -> io::Result<Sock> {
        let io = UdpSocket::from_std(std)?;
        let state = UdpSocketState::new(UdpSockRef::from(&io))?;
        Ok(Sock { io, state })
    }
}

enum Peers {
    Multicast {
        group: SocketAddr,
        /// Learned from authenticated traffic.
        book: HashMap<u32, SocketAddr>,
    },
    Udpu {
        members: HashMap<u32, SocketAddr>,
        /// Every member address except our own, deduplicated, in list order.
        others: Vec<SocketAddr>,
    },
}

/// A node's UDP endpoint. See the module docs.
pub struct Transport {
    /// Sends everything; receives unicasts (all traffic in udpu mode).
    unicast: Sock,
    /// Multicast mode only: receives the group's traffic.
    group: Option<Sock>,
    peers: Peers,
    local: SocketAddr,
    unknown: UnknownDestination,
    counters: Counters,
    /// Contiguous buffer for GSO runs. A mutex rather than a `RefCell` so that `Transport` is
    /// `Sync` and `&Transport` may be held across `readable().await` in a spawned task; it is
    /// never contended (one driver task).
    scratch: Mutex<Vec<u8>>,
    recv_buffer: usize,
    send_buffer: usize,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.peers {
            Peers::Multicast { group, .. } => format!("multicast {group}"),
            Peers::Udpu { others, .. } => format!("udpu to {others:?}"),
        };
        f.debug_struct("Transport")
            .field("local", &self.local)
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds the sockets (must run inside a tokio runtime with I/O enabled). Errors name what
    /// failed (address in use, no such interface, multicast join failed, ...).
    pub fn bind(cfg: TransportConfig) -> io::Result<Transport> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "Transport::bind must be called inside a tokio runtime",
            ));
        }
        let built = setup::open(&cfg)?;
        let local = built.unicast.local_addr()?;
        let unicast = Sock::new(built.unicast)?;
        let group = built.group.map(Sock::new).transpose()?;
        let peers = match (&cfg.mode, built.group_addr) {
            (Mode::Multicast { .. }, Some(group)) => Peers::Multicast {
                group,
                book: HashMap::new(),
            },
            (Mode::Udpu { members }, _) => {
                let mut others: Vec<SocketAddr> = Vec::new();
                for &(_, addr) in members {
                    if addr != local && !others.contains(&addr) {
                        others.push(addr);
                    }
                }
                Peers::Udpu {
                    members: members.iter().copied().collect(),
                    others,
                }
            }
            (Mode::Multicast { .. }, None) => unreachable!("setup opens a group socket"),
        };
        Ok(Transport {
            unicast,
            group,
            peers,
            local,
            unknown: UnknownDestination::default(),
            counters: Counters::default(),
            scratch: Mutex::new(Vec::new()),
            recv_buffer: built.recv_buffer,
            send_buffer: built.send_buffer,
        })
    }

    /// Waits until at least one datagram may be read (cancel-safe: it holds no state).
    ///
    /// May return spuriously; [`Transport::recv_batch`] then returns 0.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = self.unicast.io.poll_recv_ready(cx) {
                return Poll::Ready(r);
            }
            if let Some(g) = &self.group {
                if let Poll::Ready(r) = g.io.poll_recv_ready(cx) {
                    return Poll::Ready(r);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Non-blocking: reads up to `batch.capacity()` receive slots worth of datagrams (each
    /// with its source address) into `batch`, replacing its previous contents; returns how
    /// many datagrams it holds. 0 when none are queued (`WouldBlock` is not an error). With
    /// GRO one slot may hold several datagrams, so the count can exceed the capacity.
    ///
    /// Multicasts come first, then unicasts (see "Receive order" in the module docs).
    /// An error is returned only when nothing was received; it is also counted.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        let cap = batch.capacity();
        let mut used = 0;
        let mut first_err = None;
        if let Some(g) = &self.group {
            let reserve = (cap / 8).max(1).min(cap);
            self.recv_from(g, batch, &mut used, cap - reserve, &mut first_err);
            self.recv_from(&self.unicast, batch, &mut used, cap, &mut first_err);
            self.recv_from(g, batch, &mut used, cap, &mut first_err);
        } else {
            self.recv_from(&self.unicast, batch, &mut used, cap, &mut first_err);
        }
        let n = batch.len();
        if n > 0 {
            let bytes: usize = batch.entries.iter().map(|e| e.len).sum();
            bump(&self.counters.datagrams_in, n as u64);
            bump(&self.counters.bytes_in, bytes as u64);
            bump(&self.counters.recv_batches, 1);
            return Ok(n);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }

    /// Reads from `sock` into slots `used..limit` until the socket is drained (the call that
    /// sees `WouldBlock` also clears tokio's readiness, so `readable` sleeps again) or the
    /// slots run out.
    fn recv_from(
        &self,
        sock: &Sock,
        batch: &mut RecvBatch,
        used: &mut usize,
        limit: usize,
        first_err: &mut Option<io::Error>,
    ) {
        while *used < limit {
            let want = (limit - *used).min(quinn_udp::BATCH_SIZE);
            let start = *used * SLOT_SIZE;
            let region = &mut batch.buf[start..start + want * SLOT_SIZE];
            let mut iovs: Vec<IoSliceMut<'_>> =
                region.chunks_mut(SLOT_SIZE).map(IoSliceMut::new).collect();
            let metas = &mut batch.metas[..want];
            let res = sock.io.try_io(Interest::READABLE, || {
                sock.state
                    .recv(UdpSockRef::from(&sock.io), &mut iovs, metas)
            });
            match res {
                Ok(got) => {
                    bump(&self.counters.recv_syscalls, 1);
                    for (k, meta) in batch.metas[..got].iter().enumerate() {
                        let base = (*used + k) * SLOT_SIZE;
                        // GRO: equal-sized datagrams back to back, `stride` apart, the last
                        // possibly shorter.
                        let stride = if meta.stride == 0 {
                            meta.len
                        } else {
                            meta.stride
                        };
                        let mut off = 0;
                        while off < meta.len {
                            let len = stride.min(meta.len - off);
                            batch.entries.push(Entry {
                                from: unmap(meta.addr),
                                start: base + off,
                                len,
                            });
                            off += len;
                        }
                        if meta.len == 0 {
                            // An empty datagram is still a datagram (the core rejects it).
                            batch.entries.push(Entry {
                                from: unmap(meta.addr),
                                start: base,
                                len: 0,
                            });
                        }
                    }
                    *used += got;
                    if got == 0 {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bump(&self.counters.recv_errors, 1);
                    if first_err.is_none() {
                        *first_err = Some(e);
                    }
                    return;
                }
            }
        }
    }

    /// Non-blocking send "to everyone" (multicast, or one unicast per other udpu member).
    /// Failures are counted by kind, never returned.
    pub fn send_all(&self, data: &[u8]) {
        self.send_batch(&[(Destination::All, data)]);
    }

    /// Non-blocking unicast to one node. The address comes from the udpu member list, or in
    /// multicast mode from [`Transport::learn`]; an unknown node is counted as
    /// `unknown_destination` and, in multicast mode, multicast instead (see the module docs).
    pub fn send_to(&self, node: u32, data: &[u8]) {
        self.send_batch(&[(Destination::Node(node), data)]);
    }

    /// Sends many datagrams at once (GSO where available), with the same counting rules.
    ///
    /// Order is kept per destination, and a datagram never overtakes an earlier one to a
    /// different destination except within a run of consecutive `All` items in udpu mode
    /// (each member gets the whole run before the next member): a token that follows
    /// multicasts still leaves after all of them.
    pub fn send_batch(&self, items: &[(Destination, &[u8])]) {
        let mut i = 0;
        while i < items.len() {
            let dest = items[i].0;
            let mut j = i + 1;
            while j < items.len() && items[j].0 == dest {
                j += 1;
            }
            let run = &items[i..j];
            match dest {
                Destination::All => self.send_run_all(run),
                Destination::Node(node) => match self.address_of(node) {
                    Some(addr) => self.send_run(addr, run),
                    None => {
                        bump(&self.counters.unknown_destination, run.len() as u64);
                        if let (UnknownDestination::Multicast, Peers::Multicast { group, .. }) =
                            (self.unknown, &self.peers)
                        {
                            bump(&self.counters.multicast_fallbacks, run.len() as u64);
                            self.send_run(*group, run);
                        }
                    }
                },
            }
            i = j;
        }
    }

    fn send_run_all(&self, run: &[(Destination, &[u8])]) {
        match &self.peers {
            Peers::Multicast { group, .. } => self.send_run(*group, run),
            Peers::Udpu { others, .. } => {
                for &addr in others {
                    self.send_run(addr, run);
                }
            }
        }
    }

    fn address_of(&self, node: u32) -> Option<SocketAddr> {
        match &self.peers {
            Peers::Multicast { book, .. } => book.get(&node).copied(),
            Peers::Udpu { members, .. } => members.get(&node).copied(),
        }
    }

    /// Sends `run` (the data of each item) to `dst`, merging GSO-compatible stretches.
    fn send_run(&self, dst: SocketAddr, run: &[(Destination, &[u8])]) {
        let max_segments = self.unicast.state.max_gso_segments();
        let mut i = 0;
        while i < run.len() {
            let seg = run[i].1.len();
            let mut j = i + 1;
            let mut total = seg;
            if max_segments > 1 && seg > 0 {
                // GSO rule: all segments `seg` bytes long except a shorter last one.
                while j < run.len() && j - i < max_segments {
                    let len = run[j].1.len();
                    if len == 0 || len > seg || total + len > GSO_MAX_BYTES {
                        break;
                    }
                    total += len;
                    j += 1;
                    if len < seg {
                        break;
                    }
                }
            }
            if j - i == 1 {
                self.transmit(dst, run[i].1, None, 1);
            } else {
                let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
                scratch.clear();
                for item in &run[i..j] {
                    scratch.extend_from_slice(item.1);
                }
                self.transmit(dst, &scratch, Some(seg), (j - i) as u64);
            }
            i = j;
        }
    }

    /// One `sendmsg`. Goes straight to the (non-blocking) socket rather than through tokio's
    /// `try_io`: tokio would report `WouldBlock` without trying whenever it has not yet seen a
    /// writable event (right after bind, for instance), and nobody ever awaits writability here.
    fn transmit(&self, dst: SocketAddr, contents: &[u8], segment_size: Option<usize>, count: u64) {
        let t = quinn_udp::Transmit {
            destination: dst,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        bump(&self.counters.send_syscalls, 1);
        let res = loop {
            match self
                .unicast
                .state
                .try_send(UdpSockRef::from(&self.unicast.io), &t)
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match res {
            Ok(()) => {
                bump(&self.counters.datagrams_out, count);
                bump(&self.counters.bytes_out, contents.len() as u64);
                if count > 1 {
                    bump(&self.counters.gso_sends, 1);
                }
            }
            Err(e) => match segment_size {
                // EIO/EINVAL on a GSO send mean the device or the path refused GSO (or a
                // segment exceeds the MTU); quinn-udp then turns GSO off for the socket. Retry
                // the run one by one so it is not lost, and so each datagram is counted under
                // its own error. Other errors (unreachable, full buffer) would only repeat.
                Some(seg) if count > 1 && matches!(e.raw_os_error(), Some(EIO | EINVAL)) => {
                    for d in contents.chunks(seg) {
                        self.transmit(dst, d, None, 1);
                    }
                }
                _ => self.count_error(&e, count),
            },
        }
    }

    fn count_error(&self, e: &io::Error, count: u64) {
        let c = &self.counters;
        let code = e.raw_os_error();
        let slot = match code.map(Errno::from_raw) {
            Some(Errno::EAGAIN) => &c.would_block,
            Some(Errno::ENOBUFS) => &c.no_buffers,
            Some(Errno::EPERM | Errno::EACCES) => &c.permission,
            Some(Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EHOSTDOWN | Errno::ENETDOWN) => {
                &c.unreachable
            }
            Some(Errno::EMSGSIZE) => &c.too_big,
            _ if e.kind() == io::ErrorKind::WouldBlock => &c.would_block,
            _ => &c.other,
        };
        bump(slot, count);
        c.last_send_errno.store(code.unwrap_or(-1), Relaxed);
    }

    /// Records that authenticated traffic from `node` came from `addr` (multicast mode address
    /// book; the latest address wins, so a restarted node on a new port is followed). In udpu
    /// mode the member list is authoritative and this does nothing.
    pub fn learn(&mut self, node: u32, addr: SocketAddr) {
        if let Peers::Multicast { book, .. } = &mut self.peers {
            book.insert(node, unmap(addr));
        }
    }

    /// Chooses what [`Transport::send_to`] does with an unknown node in multicast mode.
    pub fn set_unknown_destination(&mut self, policy: UnknownDestination) {
        self.unknown = policy;
    }

    /// The unicast socket's address (the source address other nodes see).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The group address and port in multicast mode.
    pub fn group_addr(&self) -> Option<SocketAddr> {
        match &self.peers {
            Peers::Multicast { group, .. } => Some(*group),
            Peers::Udpu { .. } => None,
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Relaxed);
        let errno = c.last_send_errno.load(Relaxed);
        TransportStats {
            datagrams_in: g(&c.datagrams_in),
            bytes_in: g(&c.bytes_in),
            recv_batches: g(&c.recv_batches),
            recv_syscalls: g(&c.recv_syscalls),
            recv_errors: g(&c.recv_errors),
            datagrams_out: g(&c.datagrams_out),
            bytes_out: g(&c.bytes_out),
            send_syscalls: g(&c.send_syscalls),
            gso_sends: g(&c.gso_sends),
            send_errors: SendErrors {
                would_block: g(&c.would_block),
                no_buffers: g(&c.no_buffers),
                permission: g(&c.permission),
                unreachable: g(&c.unreachable),
                too_big: g(&c.too_big),
                other: g(&c.other),
            },
            last_send_errno: (errno != 0).then_some(errno),
            unknown_destination: g(&c.unknown_destination),
            multicast_fallbacks: g(&c.multicast_fallbacks),
            recv_buffer: self.recv_buffer,
            send_buffer: self.send_buffer,
            max_gso_segments: self.unicast.state.max_gso_segments(),
            gro_segments: self.unicast.state.gro_segments(),
        }
    }
}

/// IPv4-mapped IPv6 sources (possible only on dual-stack sockets, which we do not open, but
/// cheap to guard) are shown as IPv4 so address-book keys compare equal.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[derive(Copy, Clone, Debug)]
struct Entry {
    from: SocketAddr,
    /// Offset into `RecvBatch::buf`; entries are in increasing, non-overlapping order.
    start: usize,
    len: usize,
}

/// Reusable receive buffers: `capacity` slots of [`SLOT_SIZE`] bytes, filled by
/// [`Transport::recv_batch`].
///
/// Datagrams are lent out as slices, mutable so that the crypto layer can open them in place;
/// [`RecvBatch::bytes`] (or `Bytes::copy_from_slice` on the opened payload) makes the single
/// copy into an owned, exactly sized `Bytes`. Handing out slices of one shared allocation
/// instead would save that copy but let each long-lived 1.4 KB message pin a 64 KiB slot (the
/// core keeps messages until they are stable); the copy is the cheaper price.
///
/// The buffer is allocated zeroed, so pages no datagram touched are never made resident.
pub struct RecvBatch {
    buf: Vec<u8>,
    metas: Vec<RecvMeta>,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new(DEFAULT_BATCH)
    }
}

impl RecvBatch {
    /// `slots` receive slots (at least 1) of [`SLOT_SIZE`] bytes each.
    pub fn new(slots: usize) -> RecvBatch {
        let slots = slots.max(1);
        RecvBatch {
            buf: vec![0; slots * SLOT_SIZE],
            metas: vec![RecvMeta::default(); slots],
            entries: Vec::with_capacity(slots),
        }
    }

    /// Number of receive slots.
    pub fn capacity(&self) -> usize {
        self.metas.len()
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the datagrams (the buffers stay).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Datagram `i` and its source.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let e = self.entries.get(i)?;
        Some((e.from, &self.buf[e.start..e.start + e.len]))
    }

    /// Datagram `i`, mutable (for in-place decryption), and its source.
    pub fn get_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        let e = *self.entries.get(i)?;
        Some((e.from, &mut self.buf[e.start..e.start + e.len]))
    }

    /// Datagram `i` as owned `Bytes` (one copy).
    pub fn bytes(&self, i: usize) -> Option<Bytes> {
        self.get(i).map(|(_, d)| Bytes::copy_from_slice(d))
    }

    /// The datagrams in receive order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|e| (e.from, &self.buf[e.start..e.start + e.len]))
    }

    /// The datagrams in receive order, mutable (for in-place decryption).
    pub fn iter_mut(&mut self) -> IterMut<'_> {
        IterMut {
            rest: &mut self.buf[..],
            consumed: 0,
            entries: self.entries.iter(),
        }
    }
}

/// Mutable iterator over a [`RecvBatch`]; see [`RecvBatch::iter_mut`].
pub struct IterMut<'a> {
    rest: &'a mut [u8],
    /// Offset of `rest[0]` in the batch buffer.
    consumed: usize,
    entries: std::slice::Iter<'a, Entry>,
}

impl<'a> Iterator for IterMut<'a> {
    type Item = (SocketAddr, &'a mut [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.entries.next()?;
        // Entries are increasing and disjoint, so splitting off the front of what is left
        // hands out non-overlapping slices without any unsafe code.
        let rest = std::mem::take(&mut self.rest);
        let (_, tail) = rest.split_at_mut(e.start - self.consumed);
        let (data, tail) = tail.split_at_mut(e.len);
        self.rest = tail;
        self.consumed = e.start + e.len;
        Some((e.from, data))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

/// The default multicast group of a cluster, derived from its name like Corosync does (a
/// 16-bit id from the name in 239.192.0.0/16, the IPv4 organization-local scope), and for IPv6
/// a 32-bit id in ff15::/16 (flags T = transient, scope 5 = site-local).
///
/// Deterministic across runs, hosts and versions: the hash is FNV-1a (32-bit) of the name's
/// UTF-8 bytes, folded to 16 bits for IPv4. Two names may share a group; that costs only
/// bandwidth, since their packets fail each other's authentication (keys are per cluster name).
pub fn derive_multicast_group(cluster_name: &str, v6: bool) -> IpAddr {
    let mut h: u32 = 0x811c_9dc5;
    for &b in cluster_name.as_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xff15,
            0,
            0,
            0,
            0,
            0,
            (h >> 16) as u16,
            h as u16,
        ))
    } else {
        let id = ((h >> 16) ^ (h & 0xffff)) as u16;
        let [hi, lo] = id.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(239, 192, hi, lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_is_in_range_and_stable() {
        for name in ["", "a", "my-cluster", "ünïcode", "x".repeat(300).as_str()] {
            let v4 = derive_multicast_group(name, false);
            assert_eq!(v4, derive_multicast_group(name, false));
            match v4 {
                IpAddr::V4(a) => assert_eq!(&a.octets()[..2], &[239, 192]),
                IpAddr::V6(_) => panic!("v4 expected"),
            }
            match derive_multicast_group(name, true) {
                IpAddr::V6(a) => {
                    assert_eq!(a.segments()[0], 0xff15);
                    assert!(a.is_multicast());
                }
                IpAddr::V4(_) => panic!("v6 expected"),
            }
        }
        assert_ne!(
            derive_multicast_group("alpha", false),
            derive_multicast_group("beta", false)
        );
    }

    #[test]
    fn iter_mut_yields_disjoint_entries() {
        let mut b = RecvBatch::new(2);
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        b.buf[0..3].copy_from_slice(b"abc");
        b.buf[3..5].copy_from_slice(b"de");
        b.buf[SLOT_SIZE..SLOT_SIZE + 1].copy_from_slice(b"f");
        b.entries.extend([
            Entry {
                from,
                start: 0,
                len: 3,
            },
            Entry {
                from,
                start: 3,
                len: 2,
            },
            Entry {
                from,
                start: SLOT_SIZE,
                len: 1,
            },
        ]);
        let got: Vec<Vec<u8>> = b
            .iter_mut()
            .map(|(_, d)| {
                d[0] = d[0].to_ascii_uppercase();
                d.to_vec()
            })
            .collect();
        assert_eq!(got, vec![b"Abc".to_vec(), b"De".to_vec(), b"F".to_vec()]);
        assert_eq!(b.bytes(1).unwrap(), Bytes::from_static(b"De"));
    }
}
