//! Node configuration: a TOML file and a Rust builder with the same keys.
//!
//! There is one set of keys and one code path for all of them: [`NodeConfig::from_toml_str`]
//! feeds every entry of the file through the same [`NodeConfigBuilder::set_value`] that the
//! Python layer uses for `evs.Node(**settings)`, and the typed builder setters store the same
//! fields. Every check runs in [`NodeConfigBuilder::build`], so a bad value yields the same
//! error whichever way it came in.
//!
//! # Keys
//!
//! | key | type | default |
//! | --- | --- | --- |
//! | `cluster_name` | string, 1..=255 bytes, no control characters | `"evs"` |
//! | `node_id` | integer 1..=2³²−1 | derived, see below |
//! | `bind` | IP address of this node | one of `bind` / `interface` is required |
//! | `interface` | network interface name; its first address is used | |
//! | `ip_version` | `4` or `6` | family of `bind`; with `interface`, IPv4 if it has one |
//! | `port` | UDP port 1..=65535 | `5405` |
//! | `transport` | `"multicast"` or `"udpu"` | `"multicast"` |
//! | `multicast_address` | multicast group, same family as `bind` (multicast only) | derived from `cluster_name` by the runtime |
//! | `multicast_ttl` | 0..=255 (multicast only) | `1` |
//! | `members` | array of `{ node_id, address }` (udpu only, required there) | |
//! | `crypto` | `"aes256gcm"`, `"chacha20poly1305"` or `"none"` | `"aes256gcm"` |
//! | `authkey` | path of the shared key file | required unless `crypto = "none"` |
//! | `max_message_size` | bytes, 1..=64 MiB | 1 MiB |
//! | `send_queue_bytes` | bytes, ≥ `max_message_size` | 1 MiB, or `max_message_size` if larger |
//! | `delivery_buffer_bytes` | `"auto"` or bytes (`0`: no buffer) | `"auto"`, see below |
//! | `totem.*` | every field of [`totem::Config`] except the two sizes above | Corosync 3.x |
//!
//! The `[totem]` table holds `token`, `token_coefficient`,
//! `token_retransmits_before_loss_const`, `token_retransmit`, `hold`, `token_warning`, `join`,
//! `send_join`, `consensus`, `merge`, `downcheck`, `fail_recv_const`, `seqno_unchanged_const`,
//! `miss_count_const`, `window_size`, `max_messages`, `accelerated_window`, `heartbeat_failures_allowed`,
//! `max_network_delay`, `cancel_token_hold_on_retransmit`, `max_packet_size`,
//! `retransmit_list_max`, `sort_queue_capacity` and `initial_seq`, with the meanings and
//! defaults documented on [`totem::Config`]. `token_retransmit`, `hold` and `consensus` are
//! derived from `token` unless given. The annotated example is `examples/evs.toml`.
//!
//! # Values
//!
//! * Durations are integer milliseconds (`token = 3000`). A string with a unit (`"3s"`,
//!   `"3000ms"`, `"500us"`, `"1ns"`) is accepted too, and so is a string of digits, because
//!   values set from Python, environment variables or a command line often arrive as text.
//!   Every duration is capped at one hour so that the protocol's timer arithmetic cannot
//!   overflow.
//! * Integers accept a string of digits for the same reason; floats are refused, never rounded.
//! * Booleans accept `true`/`false` and the strings `yes`/`no`/`on`/`off`/`1`/`0`.
//! * Member addresses are `"10.0.0.2"`, `"10.0.0.2:5406"` or `"[fd00::2]:5406"`; the port
//!   defaults to `port`. Host names are not resolved: a node's identity must not depend on DNS
//!   at start-up.
//!
//! # Decisions
//!
//! * **Bind address.** Exactly one of `bind` and `interface` is required. There is no
//!   wildcard default because the bind address is announced to peers, identifies the local
//!   member of a udpu list and may define the node id. Unspecified, multicast, broadcast and
//!   IPv6 link-local addresses (which need a scope id) are refused. `interface` is resolved
//!   when the configuration is built; its link-local IPv6 addresses are skipped.
//! * **Node id.** Explicit `node_id` wins. With udpu the default is the id of the member whose
//!   address is `bind`:`port` (as Corosync finds itself in its nodelist). With multicast it is
//!   derived from the bind address like Corosync does: an IPv4 address as a big-endian `u32`
//!   (10.1.2.3 → 0x0A010203); for IPv6 the low 31 bits of the last four bytes (31 bits keep the
//!   id positive for tools that store node ids as signed 32-bit integers) — an error if those
//!   bits are zero. See [`node_id_from_address`].
//! * **Transport-specific keys are errors under the other transport**: `members` with
//!   multicast, `multicast_address`/`multicast_ttl` with udpu. A leftover key that silently does
//!   nothing would hide a mistaken belief about how the cluster talks.
//! * **udpu members** must contain the local node: by `node_id` when it is given (and then its
//!   address must be `bind`:`port`), otherwise by address. Node ids and addresses must be
//!   unique. The list is stored sorted by node id.
//! * **Crypto must be switched off explicitly.** The default cipher is AES-256-GCM, which needs
//!   `authkey`; `crypto = "none"` with an `authkey` is an error as well, so that nobody believes
//!   traffic is protected when it is not. Only the path is checked here; the runtime loads the
//!   file with [`crate::crypto::load_authkey`]. Relative paths are kept as written (relative to
//!   the process's working directory).
//! * **Packet size.** The knob is `totem.max_packet_size` (default 1400): the largest encoded
//!   Totem packet before crypto. Corosync's `netmtu` is not used because our headers differ;
//!   an on-wire IP packet is `max_packet_size` + crypto overhead ([`Cipher::overhead`], 46
//!   bytes for both AEADs, 30 for `none`) + 8 (UDP) + 20 (IPv4) or 40 (IPv6). The default
//!   gives 1474 / 1494 bytes, which fits an Ethernet MTU of 1500 without IP fragmentation. For
//!   a 9000-byte jumbo MTU use at most 9000 − 94 = 8906. See [`NodeConfig::max_ip_packet`].
//! * **Delivery buffer.** `delivery_buffer_bytes` bounds, per handle, the events a node holds
//!   for a handle whose queue is full (see the `queue` and `backlog` modules) before it
//!   closes the handle as overflowed. `"auto"` is what the cluster can have in flight when partitions merge:
//!   (largest ring this node has been in + 1) × `send_queue_bytes` + `window_size` ×
//!   `max_packet_size`, recomputed as rings grow; messages count their ring payload. `0`
//!   closes a handle as soon as an event finds its queue full.
//! * **Flat aliases.** [`NodeConfigBuilder::set_value`] accepts `token` as well as
//!   `totem.token` (no totem key shares a name with a top-level key), because Python keyword
//!   arguments cannot contain a dot. A TOML file must use the `[totem]` table; a totem key at
//!   the top level of a file is unknown (with a hint), so a file has one spelling only.
//!   Errors always name the canonical dotted key.
//!
//! # Errors
//!
//! Every error is a [`ConfigError`] naming the key: `invalid config key 'totem.token': 5ms is
//! below the minimum of 30ms`, `unknown config key 'totme'; did you mean 'totem'?`. Errors
//! from a file carry the line and column of the key (`evs.toml:12:1: ...`), TOML syntax errors
//! those of the syntax error.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::Value;
use totem::NodeId;

use crate::crypto::Cipher;

/// Default UDP port (Corosync's `mcastport`).
pub const DEFAULT_PORT: u16 = 5405;
/// Default cluster name.
pub const DEFAULT_CLUSTER_NAME: &str = "evs";
/// Default multicast TTL / IPv6 hop limit: the local network only.
pub const DEFAULT_MULTICAST_TTL: u8 = 1;
/// Largest accepted duration. Far beyond any sensible timer; it bounds the protocol's timer
/// arithmetic (token × members, retransmit × heartbeat failures) well away from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Largest config file [`NodeConfig::load`] reads; a guard against pointing it at a device.
pub const MAX_FILE_SIZE: u64 = 1 << 20;
/// Bytes of UDP header on every datagram.
const UDP_HEADER: usize = 8;

/// Every key, canonical spelling. Totem keys are dotted; each also has a flat alias (the part
/// after `totem.`) for [`NodeConfigBuilder::set_value`].
pub const KEYS: &[&str] = &[
    "cluster_name",
    "node_id",
    "bind",
    "interface",
    "ip_version",
    "port",
    "transport",
    "multicast_address",
    "multicast_ttl",
    "members",
    "crypto",
    "authkey",
    "max_message_size",
    "send_queue_bytes",
    "delivery_buffer_bytes",
    "totem.token",
    "totem.token_coefficient",
    "totem.token_retransmits_before_loss_const",
    "totem.token_retransmit",
    "totem.hold",
    "totem.token_warning",
    "totem.join",
    "totem.send_join",
    "totem.consensus",
    "totem.merge",
    "totem.downcheck",
    "totem.fail_recv_const",
    "totem.seqno_unchanged_const",
    "totem.miss_count_const",
    "totem.window_size",
    "totem.max_messages",
    "totem.accelerated_window",
    "totem.heartbeat_failures_allowed",
    "totem.max_network_delay",
    "totem.cancel_token_hold_on_retransmit",
    "totem.max_packet_size",
    "totem.retransmit_list_max",
    "totem.sort_queue_capacity",
    "totem.initial_seq",
];

/// Keys of one `members` entry.
const MEMBER_KEYS: &[&str] = &["node_id", "address"];

/// Corosync spellings people will carry over, with where the setting lives here.
const COROSYNC_HINTS: &[(&str, &str)] = &[
    ("nodeid", "use 'node_id'"),
    ("bindnetaddr", "use 'bind' (an address) or 'interface'"),
    ("mcastaddr", "use 'multicast_address'"),
    ("mcastport", "use 'port'"),
    ("ttl", "use 'multicast_ttl'"),
    ("secauth", "use 'crypto'"),
    ("crypto_cipher", "use 'crypto'"),
    (
        "crypto_hash",
        "the AEAD named by 'crypto' authenticates as well as encrypts",
    ),
    ("keyfile", "use 'authkey'"),
    (
        "netmtu",
        "use 'totem.max_packet_size' (netmtu minus IP, UDP and crypto headers; see the docs)",
    ),
    ("nodelist", "use 'members'"),
    ("node", "use 'members'"),
    ("ring0_addr", "use 'address' in 'members' and 'bind'"),
];

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A key that does not exist; [`ConfigError::message`] may hold a suggestion.
    UnknownKey,
    /// A value of the wrong type, out of range or in conflict with another key.
    InvalidValue,
    /// The text is not valid TOML; `key` is empty.
    Syntax,
    /// The file could not be read; `key` is empty.
    Io,
}

/// Line and column (both 1-based, the column in characters) of a key in a TOML text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// A configuration error; names the key (dotted for nested keys, e.g. `totem.token` or
/// `members[1].address`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What kind of error.
    pub kind: ConfigErrorKind,
    /// The canonical key; empty for [`ConfigErrorKind::Syntax`] and [`ConfigErrorKind::Io`].
    pub key: String,
    /// What is wrong (for an unknown key: a suggestion, or empty).
    pub message: String,
    /// Where in the TOML text, when the error comes from one.
    pub location: Option<Location>,
    /// The file, when the error comes from [`NodeConfig::load`].
    pub path: Option<PathBuf>,
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ConfigErrorKind::InvalidValue,
            key: key.into(),
            message: message.into(),
            location: None,
            path: None,
        }
    }

    fn unknown(key: impl Into<String>, hint: Option<String>) -> ConfigError {
        ConfigError {
            kind: ConfigErrorKind::UnknownKey,
            key: key.into(),
            message: hint.unwrap_or_default(),
            location: None,
            path: None,
        }
    }

    fn syntax(message: impl Into<String>, location: Option<Location>) -> ConfigError {
        ConfigError {
            kind: ConfigErrorKind::Syntax,
            key: String::new(),
            message: message.into(),
            location,
            path: None,
        }
    }

    fn io(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ConfigErrorKind::Io,
            key: String::new(),
            message: message.into(),
            location: None,
            path: Some(path.to_owned()),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Compiler style `file:line:col: ` so editors and terminals can jump to the spot.
        match (&self.path, self.location) {
            (Some(p), Some(l)) => write!(f, "{}:{}:{}: ", p.display(), l.line, l.column)?,
            (None, Some(l)) => write!(f, "line {}, column {}: ", l.line, l.column)?,
            _ => {}
        }
        match self.kind {
            ConfigErrorKind::UnknownKey => {
                write!(f, "unknown config key '{}'", self.key)?;
                if !self.message.is_empty() {
                    write!(f, "; {}", self.message)?;
                }
                Ok(())
            }
            ConfigErrorKind::InvalidValue => {
                write!(f, "invalid config key '{}': {}", self.key, self.message)
            }
            ConfigErrorKind::Syntax => write!(f, "TOML syntax error: {}", self.message),
            ConfigErrorKind::Io => match (&self.path, self.location) {
                (Some(p), None) => write!(
                    f,
                    "cannot read config file '{}': {}",
                    p.display(),
                    self.message
                ),
                _ => write!(f, "cannot read config file: {}", self.message),
            },
        }
    }
}

impl std::error::Error for ConfigError {}

/// Maps the protocol's validation error onto our key names: the two sizes live at the top
/// level here, everything else under `totem.`.
fn from_totem_error(e: totem::ConfigError) -> ConfigError {
    let key = match e.key {
        "max_message_size" | "send_queue_bytes" => e.key.to_owned(),
        k => format!("totem.{k}"),
    };
    ConfigError::invalid(key, e.reason)
}

// ---------------------------------------------------------------------------
// Small value types
// ---------------------------------------------------------------------------

/// How datagrams reach the other members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One multicast datagram per packet to `multicast_address`:`port`.
    #[default]
    Multicast,
    /// UDP unicast to every address in `members` (for networks without multicast).
    Udpu,
}

impl Transport {
    /// Configuration name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Multicast => "multicast",
            Transport::Udpu => "udpu",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = String;

    /// Parses `"multicast"` or `"udpu"`, ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "multicast" => Ok(Transport::Multicast),
            "udpu" => Ok(Transport::Udpu),
            _ => Err(format!(
                "expected \"multicast\" or \"udpu\", got \"{}\"",
                s.escape_debug()
            )),
        }
    }
}

/// IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpVersion {
    /// The family of an address.
    pub const fn of(ip: IpAddr) -> IpVersion {
        match ip {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }

    /// `4` or `6`.
    pub const fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }

    /// Bytes of IP header without options.
    pub const fn header_len(self) -> usize {
        match self {
            IpVersion::V4 => 20,
            IpVersion::V6 => 40,
        }
    }
}

impl fmt::Display for IpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IPv{}", self.number())
    }
}

/// A member of a udpu cluster, as given: the port may be left to default to `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberSpec {
    /// The member's node id.
    pub node_id: NodeId,
    /// The member's address.
    pub ip: IpAddr,
    /// The member's port; `None` means the configured `port`.
    pub port: Option<u16>,
}

impl MemberSpec {
    /// A member on the cluster's port.
    pub const fn new(node_id: NodeId, ip: IpAddr) -> MemberSpec {
        MemberSpec {
            node_id,
            ip,
            port: None,
        }
    }

    /// The same member on its own port.
    pub const fn with_port(self, port: u16) -> MemberSpec {
        MemberSpec {
            port: Some(port),
            ..self
        }
    }
}

impl From<(NodeId, IpAddr)> for MemberSpec {
    fn from((node_id, ip): (NodeId, IpAddr)) -> MemberSpec {
        MemberSpec::new(node_id, ip)
    }
}

impl From<(NodeId, SocketAddr)> for MemberSpec {
    fn from((node_id, addr): (NodeId, SocketAddr)) -> MemberSpec {
        MemberSpec::new(node_id, addr.ip()).with_port(addr.port())
    }
}

/// A member of a udpu cluster, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The member's node id.
    pub node_id: NodeId,
    /// Where its datagrams go.
    pub address: SocketAddr,
}

/// The node id Corosync would derive from an address: an IPv4 address as a big-endian `u32`;
/// for IPv6 the low 31 bits of the last four bytes. `None` when that is zero (0.0.0.0, or an
/// IPv6 address whose low 31 bits are zero), since node id 0 is reserved.
pub fn node_id_from_address(ip: IpAddr) -> Option<NodeId> {
    let id = match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]]) & 0x7fff_ffff
        }
    };
    (id != 0).then_some(id)
}

// ---------------------------------------------------------------------------
// NodeConfig
// ---------------------------------------------------------------------------

/// A complete, validated node configuration. Built only through [`NodeConfigBuilder`] (or the
/// TOML loaders, which use it), so every instance has passed all checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    cluster_name: String,
    node_id: NodeId,
    bind: IpAddr,
    interface: Option<String>,
    port: u16,
    transport: Transport,
    multicast_address: Option<IpAddr>,
    multicast_ttl: u8,
    members: Vec<Member>,
    crypto: Cipher,
    authkey: Option<PathBuf>,
    delivery_buffer: DeliveryBuffer,
    totem: totem::Config,
}

/// `delivery_buffer_bytes`: the bound of each handle's delivery buffer (see the module docs).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum DeliveryBuffer {
    /// What the cluster can have in flight at a merge, from the largest ring seen.
    #[default]
    Auto,
    /// A fixed number of bytes; 0: no buffer (a full queue closes its handle at once).
    Bytes(usize),
}

impl fmt::Display for DeliveryBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryBuffer::Auto => f.write_str("auto"),
            DeliveryBuffer::Bytes(n) => write!(f, "{n}"),
        }
    }
}

impl NodeConfig {
    /// A builder with every key unset (defaults apply at [`NodeConfigBuilder::build`]).
    pub fn builder() -> NodeConfigBuilder {
        NodeConfigBuilder::default()
    }

    /// Parses and validates a TOML text.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfigBuilder::from_toml_str(text)?.build()
    }

    /// Reads, parses and validates a TOML file; errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<NodeConfig, ConfigError> {
        NodeConfigBuilder::from_file(path)?.build()
    }

    /// A builder holding this configuration, to change a few keys and build again.
    pub fn to_builder(&self) -> NodeConfigBuilder {
        let mut b = NodeConfig::builder();
        b.cluster_name = Some(self.cluster_name.clone());
        b.node_id = Some(self.node_id);
        match &self.interface {
            Some(i) => b.interface = Some(i.clone()),
            None => b.bind = Some(self.bind),
        }
        b.ip_version = Some(self.ip_version());
        b.port = Some(self.port);
        b.transport = Some(self.transport);
        if self.transport == Transport::Multicast {
            b.multicast_address = self.multicast_address;
            b.multicast_ttl = Some(self.multicast_ttl);
        } else {
            b.members = Some(
                self.members
                    .iter()
                    .map(|m| MemberSpec::from((m.node_id, m.address)))
                    .collect(),
            );
        }
        b.crypto = Some(self.crypto);
        b.authkey = self.authkey.clone();
        b.delivery_buffer = Some(self.delivery_buffer);
        b.totem = self.totem.clone();
        b
    }

    /// The configuration as TOML, every key spelled out; parses back to an equal configuration
    /// (with `interface`, provided it still resolves to the same address).
    pub fn to_toml_string(&self) -> String {
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: Value| {
            t.insert(k.to_owned(), v);
        };
        put("cluster_name", Value::String(self.cluster_name.clone()));
        put("node_id", Value::Integer(i64::from(self.node_id)));
        match &self.interface {
            Some(i) => put("interface", Value::String(i.clone())),
            None => put("bind", Value::String(self.bind.to_string())),
        }
        put(
            "ip_version",
            Value::Integer(i64::from(self.ip_version().number())),
        );
        put("port", Value::Integer(i64::from(self.port)));
        put(
            "transport",
            Value::String(self.transport.as_str().to_owned()),
        );
        if self.transport == Transport::Multicast {
            if let Some(a) = self.multicast_address {
                put("multicast_address", Value::String(a.to_string()));
            }
            put(
                "multicast_ttl",
                Value::Integer(i64::from(self.multicast_ttl)),
            );
        } else {
            let members = self
                .members
                .iter()
                .map(|m| {
                    let mut e = toml::Table::new();
                    e.insert("node_id".into(), Value::Integer(i64::from(m.node_id)));
                    e.insert("address".into(), Value::String(m.address.to_string()));
                    Value::Table(e)
                })
                .collect();
            put("members", Value::Array(members));
        }
        put("crypto", Value::String(self.crypto.as_str().to_owned()));
        if let Some(p) = &self.authkey {
            put("authkey", Value::String(p.display().to_string()));
        }
        put(
            "max_message_size",
            uint_value(self.totem.max_message_size as u64),
        );
        put(
            "send_queue_bytes",
            uint_value(self.totem.send_queue_bytes as u64),
        );
        put(
            "delivery_buffer_bytes",
            match self.delivery_buffer {
                DeliveryBuffer::Auto => Value::String("auto".into()),
                DeliveryBuffer::Bytes(n) => uint_value(n as u64),
            },
        );
        let c = &self.totem;
        let mut z = toml::Table::new();
        let mut tp = |k: &str, v: Value| {
            z.insert(k.to_owned(), v);
        };
        tp("token", duration_value(c.token));
        tp("token_coefficient", duration_value(c.token_coefficient));
        tp(
            "token_retransmits_before_loss_const",
            uint_value(c.token_retransmits_before_loss_const.into()),
        );
        if let Some(d) = c.token_retransmit {
            tp("token_retransmit", duration_value(d));
        }
        if let Some(d) = c.hold {
            tp("hold", duration_value(d));
        }
        tp("token_warning", uint_value(c.token_warning.into()));
        tp("join", duration_value(c.join));
        tp("send_join", duration_value(c.send_join));
        if let Some(d) = c.consensus {
            tp("consensus", duration_value(d));
        }
        tp("merge", duration_value(c.merge));
        tp("downcheck", duration_value(c.downcheck));
        tp("fail_recv_const", uint_value(c.fail_recv_const.into()));
        tp(
            "seqno_unchanged_const",
            uint_value(c.seqno_unchanged_const.into()),
        );
        tp("miss_count_const", uint_value(c.miss_count_const.into()));
        tp("window_size", uint_value(c.window_size.into()));
        tp("max_messages", uint_value(c.max_messages.into()));
        tp(
            "accelerated_window",
            uint_value(c.accelerated_window.into()),
        );
        tp(
            "heartbeat_failures_allowed",
            uint_value(c.heartbeat_failures_allowed.into()),
        );
        tp("max_network_delay", duration_value(c.max_network_delay));
        tp(
            "cancel_token_hold_on_retransmit",
            Value::Boolean(c.cancel_token_hold_on_retransmit),
        );
        tp("max_packet_size", uint_value(c.max_packet_size as u64));
        tp(
            "retransmit_list_max",
            uint_value(c.retransmit_list_max as u64),
        );
        tp("sort_queue_capacity", uint_value(c.sort_queue_capacity));
        tp("initial_seq", uint_value(c.initial_seq));
        put("totem", Value::Table(z));
        // A table of plain values, strings, arrays and tables always serializes.
        toml::to_string(&t).unwrap_or_default()
    }

    /// The cluster's name (also part of the key derivation and of the default multicast group).
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// This node's id (explicit or derived; never 0).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address to bind to (resolved from `interface` when that was given).
    pub fn bind(&self) -> IpAddr {
        self.bind
    }

    /// The socket address to bind to: `bind`:`port`.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The interface `bind` was resolved from, if it was given by interface.
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    /// The address family in use.
    pub fn ip_version(&self) -> IpVersion {
        IpVersion::of(self.bind)
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The configured multicast group; `None` means the runtime derives it from the cluster
    /// name (always `None` with udpu).
    pub fn multicast_address(&self) -> Option<IpAddr> {
        self.multicast_address
    }

    /// Multicast TTL (IPv6: hop limit).
    pub fn multicast_ttl(&self) -> u8 {
        self.multicast_ttl
    }

    /// udpu members sorted by node id, the local node included; empty with multicast.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Packet protection.
    pub fn crypto(&self) -> Cipher {
        self.crypto
    }

    /// Path of the authkey file; `None` exactly when `crypto` is `none`.
    pub fn authkey(&self) -> Option<&Path> {
        self.authkey.as_deref()
    }

    /// Largest application message in bytes.
    pub fn max_message_size(&self) -> usize {
        self.totem.max_message_size
    }

    /// Bytes of application messages that may wait to be sent.
    pub fn send_queue_bytes(&self) -> usize {
        self.totem.send_queue_bytes
    }

    /// The bound of each handle's delivery buffer (`delivery_buffer_bytes`).
    pub fn delivery_buffer(&self) -> DeliveryBuffer {
        self.delivery_buffer
    }

    /// The protocol configuration (already validated).
    pub fn totem(&self) -> totem::Config {
        self.totem.clone()
    }

    /// The protocol configuration, borrowed.
    pub fn totem_ref(&self) -> &totem::Config {
        &self.totem
    }

    /// Largest UDP payload the node sends: a Totem packet plus the crypto frame.
    pub fn max_datagram_size(&self) -> usize {
        self.totem.max_packet_size + self.crypto.overhead()
    }

    /// Largest IP packet the node sends: the datagram plus UDP and IP headers. Keep it at or
    /// below the path MTU to avoid IP fragmentation.
    pub fn max_ip_packet(&self) -> usize {
        self.max_datagram_size() + UDP_HEADER + self.ip_version().header_len()
    }
}

fn uint_value(v: u64) -> Value {
    // TOML integers are signed 64-bit; larger values go out as strings, which read back.
    match i64::try_from(v) {
        Ok(i) => Value::Integer(i),
        Err(_) => Value::String(v.to_string()),
    }
}

fn duration_value(d: Duration) -> Value {
    let ms = d.as_millis() as u64;
    if Duration::from_millis(ms) == d {
        uint_value(ms)
    } else if Duration::from_micros(d.as_micros() as u64) == d {
        Value::String(format!("{}us", d.as_micros()))
    } else {
        Value::String(format!("{}ns", d.as_nanos()))
    }
}

// ---------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------

/// Where each key of a TOML text was written, so that errors found later (in `build`) can
/// still point at the line.
#[derive(Clone, Debug, Default)]
struct Origins {
    path: Option<PathBuf>,
    at: BTreeMap<String, Location>,
}

impl Origins {
    /// The location of `key`, or of the array element or array that holds it
    /// (`members[2].address` → `members[2]` → `members`: a missing field is best shown at its
    /// entry). It does not fall back from `totem.token` to the `[totem]` header: a key absent
    /// from the text (or overridden since) has no location there.
    fn locate(&self, key: &str) -> Option<Location> {
        let mut k = key;
        loop {
            if let Some(l) = self.at.get(k) {
                return Some(*l);
            }
            let cut = k.rfind(['.', '['])?;
            let parent = &k[..cut];
            if k[cut..].starts_with('.') && !parent.ends_with(']') {
                return None;
            }
            k = parent;
        }
    }

    /// Forgets `key` and everything under it: it was set again by other means.
    fn forget(&mut self, key: &str) {
        let nested = |k: &String| {
            k == key
                || k.strip_prefix(key)
                    .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
        };
        self.at.retain(|k, _| !nested(k));
    }

    fn attach(&self, mut e: ConfigError) -> ConfigError {
        if e.location.is_none() {
            e.location = self.locate(&e.key);
            if e.location.is_some() {
                e.path.clone_from(&self.path);
            }
        }
        e
    }
}

/// Builds a [`NodeConfig`]: one typed setter per key (the totem keys by their flat names), and
/// [`set_value`](Self::set_value) / [`set_from_str`](Self::set_from_str) taking the key as a
/// string. Setters only store; every check runs in [`build`](Self::build).
#[derive(Clone, Debug, Default)]
pub struct NodeConfigBuilder {
    cluster_name: Option<String>,
    node_id: Option<NodeId>,
    bind: Option<IpAddr>,
    interface: Option<String>,
    ip_version: Option<IpVersion>,
    port: Option<u16>,
    transport: Option<Transport>,
    multicast_address: Option<IpAddr>,
    multicast_ttl: Option<u8>,
    members: Option<Vec<MemberSpec>>,
    crypto: Option<Cipher>,
    authkey: Option<PathBuf>,
    delivery_buffer: Option<DeliveryBuffer>,
    /// Holds the totem keys and the two top-level sizes, which live in `totem::Config`.
    totem: totem::Config,
    /// `send_queue_bytes` was given; otherwise it grows to `max_message_size` if that is
    /// larger than its default.
    send_queue_explicit: bool,
    origins: Origins,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => |$b:ident, $v:ident| $body:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, $v: $ty) -> &mut Self {
                let $b = &mut *self;
                $body;
                self
            }
        )*
    };
}

impl NodeConfigBuilder {
    /// A builder holding the keys of a TOML text (not yet validated as a whole: call
    /// [`build`](Self::build), possibly after overriding keys).
    pub fn from_toml_str(text: &str) -> Result<NodeConfigBuilder, ConfigError> {
        let mut b = NodeConfigBuilder::default();
        b.merge_toml(text, None)?;
        Ok(b)
    }

    /// A builder holding the keys of a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<NodeConfigBuilder, ConfigError> {
        let path = path.as_ref();
        let text = read_limited(path)?;
        let mut b = NodeConfigBuilder::default();
        b.merge_toml(&text, Some(path))?;
        Ok(b)
    }

    /// Applies every key of a TOML text, in the order written, over what is already set.
    fn merge_toml(&mut self, text: &str, path: Option<&Path>) -> Result<(), ConfigError> {
        let with_path = |mut e: ConfigError| {
            e.path = path.map(Path::to_owned);
            e
        };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let loc = e.span().map(|s| location_of(text, s.start));
            with_path(ConfigError::syntax(e.message().trim(), loc))
        })?;
        // A second, span-keeping parse records where each key is; the text parsed once
        // already, so this cannot fail in practice, and locations are only a convenience.
        let mut at = BTreeMap::new();
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            record_origins(text, "", doc.get_ref(), &mut at);
        }
        self.origins.path = path.map(Path::to_owned);
        self.origins.at.extend(at);
        let mut entries: Vec<(&String, &Value)> = table.iter().collect();
        entries.sort_by_key(|(k, _)| self.origins.at.get(k.as_str()).copied());
        for (k, v) in entries {
            self.apply_key(k, v, false)
                .map_err(|e| self.origins.attach(e))?;
        }
        Ok(())
    }

    /// Sets one key from a TOML value: the entry point for bindings (`evs.Node(**settings)`)
    /// and for anything that has keys as strings. Accepts the canonical key (`totem.token`),
    /// the flat alias of a totem key (`token`), and `totem` with a table of totem keys.
    /// Type errors are reported here; range and consistency errors by [`build`](Self::build).
    /// Both name the canonical key.
    pub fn set_value(
        &mut self,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<&mut Self, ConfigError> {
        let value = value.into();
        self.apply_key(key, &value, true)?;
        Ok(self)
    }

    /// Sets one key from text, as found in an environment variable or on a command line. The
    /// text is the value itself, not TOML (`cluster_name` `prod`, `token` `3000` or `3s`),
    /// except that `members` may be a TOML array and `totem` must be a TOML inline table.
    /// `members` also takes the compact form `"1=10.0.0.1, 2=10.0.0.2:5406"`.
    pub fn set_from_str(&mut self, key: &str, text: &str) -> Result<&mut Self, ConfigError> {
        let t = text.trim();
        let structured = match key {
            "members" => t.starts_with('['),
            "totem" => true,
            _ => false,
        };
        let value = if structured {
            t.parse::<Value>().map_err(|e| {
                ConfigError::invalid(key, format!("not a TOML value: {}", e.message().trim()))
            })?
        } else {
            Value::String(text.to_owned())
        };
        self.set_value(key, value)
    }

    /// Applies one entry. `api` marks a value from [`set_value`](Self::set_value) rather than
    /// from a TOML text: only then are flat totem aliases accepted, and the key's file location
    /// (if any) is dropped because the file no longer explains the value.
    fn apply_key(&mut self, key: &str, v: &Value, api: bool) -> Result<(), ConfigError> {
        if key == "totem" {
            let Value::Table(t) = v else {
                return Err(ConfigError::invalid(
                    "totem",
                    format!("expected a table of totem settings, got {}", describe(v)),
                ));
            };
            let mut entries: Vec<(String, &Value)> =
                t.iter().map(|(k, v)| (format!("totem.{k}"), v)).collect();
            entries.sort_by_key(|(k, _)| self.origins.at.get(k).copied());
            for (k, v) in entries {
                self.apply_key(&k, v, api)?;
            }
            return Ok(());
        }
        let canonical = match KEYS.iter().find(|k| **k == key) {
            Some(k) => *k,
            None if api && !key.contains('.') => {
                match KEYS.iter().find(|k| k.strip_prefix("totem.") == Some(key)) {
                    Some(k) => *k,
                    None => return Err(unknown_key(key, api)),
                }
            }
            None => return Err(unknown_key(key, api)),
        };
        if api {
            self.origins.forget(canonical);
        }
        self.apply(canonical, v)
    }

    /// Stores one value under its canonical key after converting its type.
    fn apply(&mut self, key: &'static str, v: &Value) -> Result<(), ConfigError> {
        let e = |m: String| ConfigError::invalid(key, m);
        if key == "send_queue_bytes" {
            self.send_queue_explicit = true;
        }
        let c = &mut self.totem;
        match key {
            "cluster_name" => self.cluster_name = Some(text(v).map_err(e)?.to_owned()),
            "node_id" => self.node_id = Some(uint(v, u32::MAX.into()).map_err(e)? as u32),
            "bind" => self.bind = Some(ip(v).map_err(e)?),
            "interface" => self.interface = Some(text(v).map_err(e)?.to_owned()),
            "ip_version" => self.ip_version = Some(ip_version(v).map_err(e)?),
            "port" => self.port = Some(uint(v, u16::MAX.into()).map_err(e)? as u16),
            "transport" => {
                self.transport = Some(text(v).map_err(e)?.parse::<Transport>().map_err(e)?)
            }
            "multicast_address" => self.multicast_address = Some(ip(v).map_err(e)?),
            "multicast_ttl" => self.multicast_ttl = Some(uint(v, u8::MAX.into()).map_err(e)? as u8),
            "members" => self.members = Some(members(v)?),
            "crypto" => {
                let name = text(v).map_err(e)?;
                self.crypto = Some(name.parse::<Cipher>().map_err(|x| e(x.to_string()))?);
            }
            "authkey" => self.authkey = Some(PathBuf::from(text(v).map_err(e)?)),
            "max_message_size" => c.max_message_size = size(v).map_err(e)?,
            "send_queue_bytes" => c.send_queue_bytes = size(v).map_err(e)?,
            "delivery_buffer_bytes" => self.delivery_buffer = Some(delivery_buffer(v).map_err(e)?),
            "totem.token" => c.token = millis(v).map_err(e)?,
            "totem.token_coefficient" => c.token_coefficient = millis(v).map_err(e)?,
            "totem.token_retransmits_before_loss_const" => {
                c.token_retransmits_before_loss_const = u32v(v).map_err(e)?
            }
            "totem.token_retransmit" => c.token_retransmit = Some(millis(v).map_err(e)?),
            "totem.hold" => c.hold = Some(millis(v).map_err(e)?),
            "totem.token_warning" => c.token_warning = u32v(v).map_err(e)?,
            "totem.join" => c.join = millis(v).map_err(e)?,
            "totem.send_join" => c.send_join = millis(v).map_err(e)?,
            "totem.consensus" => c.consensus = Some(millis(v).map_err(e)?),
            "totem.merge" => c.merge = millis(v).map_err(e)?,
            "totem.downcheck" => c.downcheck = millis(v).map_err(e)?,
            "totem.fail_recv_const" => c.fail_recv_const = u32v(v).map_err(e)?,
            "totem.seqno_unchanged_const" => c.seqno_unchanged_const = u32v(v).map_err(e)?,
            "totem.miss_count_const" => c.miss_count_const = u32v(v).map_err(e)?,
            "totem.window_size" => c.window_size = u32v(v).map_err(e)?,
            "totem.max_messages" => c.max_messages = u32v(v).map_err(e)?,
            "totem.accelerated_window" => c.accelerated_window = u32v(v).map_err(e)?,
            "totem.heartbeat_failures_allowed" => {
                c.heartbeat_failures_allowed = u32v(v).map_err(e)?
            }
            "totem.max_network_delay" => c.max_network_delay = millis(v).map_err(e)?,
            "totem.cancel_token_hold_on_retransmit" => {
                c.cancel_token_hold_on_retransmit = boolean(v).map_err(e)?
            }
            "totem.max_packet_size" => c.max_packet_size = size(v).map_err(e)?,
            "totem.retransmit_list_max" => c.retransmit_list_max = size(v).map_err(e)?,
            "totem.sort_queue_capacity" => c.sort_queue_capacity = uint(v, u64::MAX).map_err(e)?,
            "totem.initial_seq" => c.initial_seq = uint(v, u64::MAX).map_err(e)?,
            // KEYS and this match are kept in step by a test; an error beats a panic.
            _ => return Err(e("key has no setter (internal error)".into())),
        }
        Ok(())
    }

    setters! {
        /// `cluster_name`.
        cluster_name: impl Into<String> => |b, v| b.cluster_name = Some(v.into());
        /// `node_id`; default derived (see the module docs).
        node_id: NodeId => |b, v| b.node_id = Some(v);
        /// `bind`: this node's address.
        bind: IpAddr => |b, v| b.bind = Some(v);
        /// `interface`: take the bind address from this network interface.
        interface: impl Into<String> => |b, v| b.interface = Some(v.into());
        /// `ip_version`: the family to pick from `interface`.
        ip_version: IpVersion => |b, v| b.ip_version = Some(v);
        /// `port`.
        port: u16 => |b, v| b.port = Some(v);
        /// `transport`.
        transport: Transport => |b, v| b.transport = Some(v);
        /// `multicast_address` (multicast only).
        multicast_address: IpAddr => |b, v| b.multicast_address = Some(v);
        /// `multicast_ttl` (multicast only).
        multicast_ttl: u8 => |b, v| b.multicast_ttl = Some(v);
        /// `crypto`.
        crypto: Cipher => |b, v| b.crypto = Some(v);
        /// `authkey`: path of the shared key file.
        authkey: impl Into<PathBuf> => |b, v| b.authkey = Some(v.into());
        /// `max_message_size` in bytes.
        max_message_size: usize => |b, v| b.totem.max_message_size = v;
        /// `send_queue_bytes`.
        send_queue_bytes: usize => |b, v| {
            b.totem.send_queue_bytes = v;
            b.send_queue_explicit = true
        };
        /// `delivery_buffer_bytes`.
        delivery_buffer_bytes: DeliveryBuffer => |b, v| b.delivery_buffer = Some(v);
        /// `totem.token`.
        token: Duration => |b, v| b.totem.token = v;
        /// `totem.token_coefficient`.
        token_coefficient: Duration => |b, v| b.totem.token_coefficient = v;
        /// `totem.token_retransmits_before_loss_const`.
        token_retransmits_before_loss_const: u32 =>
            |b, v| b.totem.token_retransmits_before_loss_const = v;
        /// `totem.token_retransmit`; default derived from `token`.
        token_retransmit: Duration => |b, v| b.totem.token_retransmit = Some(v);
        /// `totem.hold`; default derived from `token_retransmit`.
        hold: Duration => |b, v| b.totem.hold = Some(v);
        /// `totem.token_warning` (percent of `token`).
        token_warning: u32 => |b, v| b.totem.token_warning = v;
        /// `totem.join`.
        join: Duration => |b, v| b.totem.join = v;
        /// `totem.send_join`.
        send_join: Duration => |b, v| b.totem.send_join = v;
        /// `totem.consensus`; default 1.2 × the effective token.
        consensus: Duration => |b, v| b.totem.consensus = Some(v);
        /// `totem.merge`.
        merge: Duration => |b, v| b.totem.merge = v;
        /// `totem.downcheck`.
        downcheck: Duration => |b, v| b.totem.downcheck = v;
        /// `totem.fail_recv_const`.
        fail_recv_const: u32 => |b, v| b.totem.fail_recv_const = v;
        /// `totem.seqno_unchanged_const`.
        seqno_unchanged_const: u32 => |b, v| b.totem.seqno_unchanged_const = v;
        /// `totem.miss_count_const`.
        miss_count_const: u32 => |b, v| b.totem.miss_count_const = v;
        /// `totem.window_size`.
        window_size: u32 => |b, v| b.totem.window_size = v;
        /// `totem.max_messages`.
        max_messages: u32 => |b, v| b.totem.max_messages = v;
        /// `totem.accelerated_window`.
        accelerated_window: u32 => |b, v| b.totem.accelerated_window = v;
        /// `totem.heartbeat_failures_allowed`.
        heartbeat_failures_allowed: u32 => |b, v| b.totem.heartbeat_failures_allowed = v;
        /// `totem.max_network_delay`.
        max_network_delay: Duration => |b, v| b.totem.max_network_delay = v;
        /// `totem.cancel_token_hold_on_retransmit`.
        cancel_token_hold_on_retransmit: bool =>
            |b, v| b.totem.cancel_token_hold_on_retransmit = v;
        /// `totem.max_packet_size`.
        max_packet_size: usize => |b, v| b.totem.max_packet_size = v;
        /// `totem.retransmit_list_max`.
        retransmit_list_max: usize => |b, v| b.totem.retransmit_list_max = v;
        /// `totem.sort_queue_capacity`.
        sort_queue_capacity: u64 => |b, v| b.totem.sort_queue_capacity = v;
        /// `totem.initial_seq` (for tests of sequence-number wrap-around).
        initial_seq: u64 => |b, v| b.totem.initial_seq = v;
    }

    /// `members`: replaces the udpu member list.
    pub fn members<I, M>(&mut self, members: I) -> &mut Self
    where
        I: IntoIterator<Item = M>,
        M: Into<MemberSpec>,
    {
        self.members = Some(members.into_iter().map(Into::into).collect());
        self
    }

    /// Appends one udpu member.
    pub fn add_member(&mut self, member: impl Into<MemberSpec>) -> &mut Self {
        self.members
            .get_or_insert_with(Vec::new)
            .push(member.into());
        self
    }

    /// Sets every totem key at once, `max_message_size` and `send_queue_bytes` included
    /// (they are fields of [`totem::Config`]).
    pub fn totem(&mut self, config: totem::Config) -> &mut Self {
        self.totem = config;
        self.send_queue_explicit = true;
        self
    }

    /// Validates everything and resolves `interface`, derived node ids and member ports.
    /// Errors name the key; keys that came from a TOML text also carry its location.
    pub fn build(&self) -> Result<NodeConfig, ConfigError> {
        self.build_inner().map_err(|e| self.origins.attach(e))
    }

    fn build_inner(&self) -> Result<NodeConfig, ConfigError> {
        fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
            ConfigError::invalid(key, message)
        }

        let cluster_name = self
            .cluster_name
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_owned());
        if cluster_name.is_empty() || cluster_name.len() > 255 {
            return Err(invalid("cluster_name", "must be 1..=255 bytes long"));
        }
        if cluster_name.chars().any(char::is_control) {
            return Err(invalid(
                "cluster_name",
                "must not contain control characters",
            ));
        }

        let bind = match (self.bind, &self.interface) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "bind",
                    "conflicts with 'interface': give one of 'bind' and 'interface'",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "bind",
                    "required: give 'bind' (this node's address) or 'interface' (a network \
                     interface name)",
                ))
            }
            (Some(ip), None) => {
                check_bind(ip).map_err(|m| invalid("bind", m))?;
                if let Some(want) = self.ip_version {
                    if want != IpVersion::of(ip) {
                        return Err(invalid(
                            "ip_version",
                            format!(
                                "is {} but bind {ip} is {}",
                                want.number(),
                                IpVersion::of(ip)
                            ),
                        ));
                    }
                }
                ip
            }
            (None, Some(name)) => {
                check_interface_name(name).map_err(|m| invalid("interface", m))?;
                let ip = resolve_interface(name, self.ip_version)
                    .map_err(|m| invalid("interface", m))?;
                check_bind(ip).map_err(|m| {
                    invalid(
                        "interface",
                        format!("its address {ip} cannot be bound: {m}"),
                    )
                })?;
                ip
            }
        };
        let family = IpVersion::of(bind);

        let port = self.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(invalid("port", "must be within 1..=65535"));
        }
        let transport = self.transport.unwrap_or_default();

        if self.node_id == Some(0) {
            return Err(invalid("node_id", "0 is reserved; use 1..=4294967295"));
        }

        let mut multicast_ttl = DEFAULT_MULTICAST_TTL;
        let mut members = Vec::new();
        let node_id = match transport {
            Transport::Multicast => {
                if self.members.is_some() {
                    return Err(invalid(
                        "members",
                        "is only used with transport = \"udpu\" (multicast finds members by \
                         itself)",
                    ));
                }
                if let Some(group) = self.multicast_address {
                    if !group.is_multicast() {
                        return Err(invalid(
                            "multicast_address",
                            format!("{group} is not a multicast address"),
                        ));
                    }
                    if IpVersion::of(group) != family {
                        return Err(invalid(
                            "multicast_address",
                            format!(
                                "{group} is {} but bind {bind} is {family}",
                                IpVersion::of(group)
                            ),
                        ));
                    }
                }
                multicast_ttl = self.multicast_ttl.unwrap_or(DEFAULT_MULTICAST_TTL);
                match self.node_id {
                    Some(id) => id,
                    None => node_id_from_address(bind).ok_or_else(|| {
                        invalid(
                            "node_id",
                            format!(
                                "cannot be derived from bind {bind} (its low 31 bits are zero); \
                                 set node_id"
                            ),
                        )
                    })?,
                }
            }
            Transport::Udpu => {
                for (key, set) in [
                    ("multicast_address", self.multicast_address.is_some()),
                    ("multicast_ttl", self.multicast_ttl.is_some()),
                ] {
                    if set {
                        return Err(invalid(key, "is only used with transport = \"multicast\""));
                    }
                }
                let specs = self.members.as_deref().unwrap_or_default();
                if specs.is_empty() {
                    return Err(invalid(
                        "members",
                        "required with transport = \"udpu\": list every node, this one included",
                    ));
                }
                members = resolve_members(specs, port, family)?;
                let me = SocketAddr::new(bind, port);
                let local = |i: usize| format!("members[{i}]");
                match self.node_id {
                    Some(id) => {
                        let Some(i) = members.iter().position(|m| m.node_id == id) else {
                            return Err(invalid(
                                "members",
                                format!("has no entry for this node (node_id {id})"),
                            ));
                        };
                        if members[i].address != me {
                            return Err(invalid(
                                "node_id",
                                format!(
                                    "{id} is {} at {}, but this node binds {me}",
                                    local(i),
                                    members[i].address
                                ),
                            ));
                        }
                        id
                    }
                    None => match members.iter().find(|m| m.address == me) {
                        Some(m) => m.node_id,
                        None => {
                            return Err(invalid(
                                "members",
                                format!(
                                    "has no entry for this node ({me}); add it, or set node_id"
                                ),
                            ))
                        }
                    },
                }
            }
        };
        members.sort_by_key(|m| m.node_id);

        let crypto = self.crypto.unwrap_or_default();
        let authkey = match (crypto, &self.authkey) {
            (Cipher::None, Some(_)) => {
                return Err(invalid(
                    "authkey",
                    "must not be set with crypto = \"none\" (traffic would not be protected); \
                     remove it or choose a cipher",
                ))
            }
            (Cipher::None, None) => None,
            (_, None) => {
                return Err(invalid(
                    "authkey",
                    format!(
                        "required with crypto = \"{crypto}\"{}; set crypto = \"none\" \
                         explicitly to run without packet protection",
                        if self.crypto.is_none() {
                            " (the default)"
                        } else {
                            ""
                        }
                    ),
                ))
            }
            (_, Some(p)) => {
                if p.as_os_str().is_empty() {
                    return Err(invalid("authkey", "must not be empty"));
                }
                Some(p.clone())
            }
        };

        let mut totem = self.totem.clone();
        // The application's limit; the processor gets it plus the group header (see
        // `groups::ring_message_size`), which its own bound leaves room for.
        if totem.max_message_size == 0 || totem.max_message_size > 64 << 20 {
            return Err(invalid("max_message_size", "must be within 1..=64 MiB"));
        }
        if !self.send_queue_explicit {
            totem.send_queue_bytes = totem.send_queue_bytes.max(totem.max_message_size);
        }
        check_durations(&totem)?;
        totem.validate().map_err(from_totem_error)?;

        Ok(NodeConfig {
            cluster_name,
            node_id,
            bind,
            interface: self.interface.clone(),
            port,
            transport,
            multicast_address: self.multicast_address,
            multicast_ttl,
            members,
            crypto,
            authkey,
            delivery_buffer: self.delivery_buffer.unwrap_or_default(),
            totem,
        })
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn check_bind(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() {
        return Err(format!(
            "{ip} is the wildcard address; give this node's own address (it is announced to \
             peers)"
        ));
    }
    if ip.is_multicast() {
        return Err(format!(
            "{ip} is a multicast address; the group goes in multicast_address"
        ));
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => Err(format!("{ip} is the broadcast address")),
        // fe80::/10 needs a scope id that an address alone cannot carry.
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Err(format!(
            "{ip} is an IPv6 link-local address, which needs a scope id; use a global or \
             unique-local address"
        )),
        _ => Ok(()),
    }
}

fn check_interface_name(name: &str) -> Result<(), String> {
    // Linux's IFNAMSIZ is 16 including the terminating NUL.
    if name.is_empty() || name.len() > 15 {
        return Err("must be a network interface name of 1..=15 bytes".into());
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(format!(
            "\"{}\" is not a network interface name",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// The first address of the interface in the wanted family; without a wish, IPv4 if it has
/// one (the common case), else IPv6. Link-local IPv6 addresses are not listed by `if-addrs`.
fn resolve_interface(name: &str, want: Option<IpVersion>) -> Result<IpAddr, String> {
    let all =
        if_addrs::get_if_addrs().map_err(|e| format!("cannot list the network interfaces: {e}"))?;
    let addrs: Vec<IpAddr> = all
        .iter()
        .filter(|i| i.name == name)
        .map(|i| i.ip())
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "no network interface \"{name}\" with a usable IP address"
        ));
    }
    let first = |v: IpVersion| addrs.iter().copied().find(|a| IpVersion::of(*a) == v);
    let picked = match want {
        Some(v) => first(v),
        None => first(IpVersion::V4).or_else(|| first(IpVersion::V6)),
    };
    picked.ok_or_else(|| {
        format!(
            "network interface \"{name}\" has no usable {} address (link-local IPv6 addresses \
             are skipped)",
            want.unwrap_or(IpVersion::V4)
        )
    })
}

fn resolve_members(
    specs: &[MemberSpec],
    port: u16,
    family: IpVersion,
) -> Result<Vec<Member>, ConfigError> {
    let mut out: Vec<Member> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let key = |field: &str| format!("members[{i}].{field}");
        if s.node_id == 0 {
            return Err(ConfigError::invalid(key("node_id"), "0 is reserved"));
        }
        let address = SocketAddr::new(s.ip, s.port.unwrap_or(port));
        if address.port() == 0 {
            return Err(ConfigError::invalid(key("address"), "port 0 is not a port"));
        }
        check_bind(s.ip).map_err(|m| ConfigError::invalid(key("address"), m))?;
        if IpVersion::of(s.ip) != family {
            return Err(ConfigError::invalid(
                key("address"),
                format!(
                    "{} is {} but this node uses {family}",
                    s.ip,
                    IpVersion::of(s.ip)
                ),
            ));
        }
        if let Some(j) = out.iter().position(|m| m.node_id == s.node_id) {
            return Err(ConfigError::invalid(
                key("node_id"),
                format!("duplicate node id {} (also members[{j}])", s.node_id),
            ));
        }
        if let Some(j) = out.iter().position(|m| m.address == address) {
            return Err(ConfigError::invalid(
                key("address"),
                format!("duplicate address {address} (also members[{j}])"),
            ));
        }
        out.push(Member {
            node_id: s.node_id,
            address,
        });
    }
    Ok(out)
}

fn check_durations(c: &totem::Config) -> Result<(), ConfigError> {
    let all = [
        ("token", Some(c.token)),
        ("token_coefficient", Some(c.token_coefficient)),
        ("token_retransmit", c.token_retransmit),
        ("hold", c.hold),
        ("join", Some(c.join)),
        ("send_join", Some(c.send_join)),
        ("consensus", c.consensus),
        ("merge", Some(c.merge)),
        ("downcheck", Some(c.downcheck)),
        ("max_network_delay", Some(c.max_network_delay)),
    ];
    for (key, d) in all {
        if d.is_some_and(|d| d > MAX_DURATION) {
            return Err(ConfigError::invalid(
                format!("totem.{key}"),
                format!("must be at most {} ms (one hour)", MAX_DURATION.as_millis()),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Value conversion
// ---------------------------------------------------------------------------

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string \"{}\"", s.escape_debug()),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(x) => format!("the float {x}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the date-time {d}"),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

fn text(v: &Value) -> Result<&str, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!("expected a string, got {}", describe(other))),
    }
}

fn uint(v: &Value, max: u64) -> Result<u64, String> {
    let n = match v {
        Value::Integer(i) if *i < 0 => return Err(format!("must not be negative, got {i}")),
        Value::Integer(i) => *i as u64,
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('-') && t[1..].bytes().all(|b| b.is_ascii_digit()) && t.len() > 1 {
                return Err(format!("must not be negative, got {t}"));
            }
            match t.parse::<u64>() {
                Ok(n) => n,
                // All digits but unparsable: too large for any of our fields.
                Err(_) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(format!("must be at most {max}, got {t}"))
                }
                Err(_) => return Err(format!("expected an integer, got {}", describe(v))),
            }
        }
        other => return Err(format!("expected an integer, got {}", describe(other))),
    };
    if n > max {
        return Err(format!("must be at most {max}, got {n}"));
    }
    Ok(n)
}

fn delivery_buffer(v: &Value) -> Result<DeliveryBuffer, String> {
    if let Value::String(s) = v {
        if s.trim() == "auto" {
            return Ok(DeliveryBuffer::Auto);
        }
    }
    let bad = || {
        format!(
            "expected \"auto\" or a number of bytes (0: no buffer), got {}",
            describe(v)
        )
    };
    match v {
        Value::Integer(_) | Value::String(_) => size(v).map(DeliveryBuffer::Bytes).map_err(|e| {
            if e.starts_with("expected") {
                bad()
            } else {
                e
            }
        }),
        _ => Err(bad()),
    }
}

fn u32v(v: &Value) -> Result<u32, String> {
    uint(v, u32::MAX.into()).map(|n| n as u32)
}

fn size(v: &Value) -> Result<usize, String> {
    uint(v, usize::MAX as u64).map(|n| n as usize)
}

fn millis(v: &Value) -> Result<Duration, String> {
    let expected = || {
        format!(
            "expected milliseconds (an integer such as 3000, or a string such as \"3s\" or \
             \"3000ms\"), got {}",
            describe(v)
        )
    };
    let d = match v {
        Value::Integer(i) if *i < 0 => return Err(format!("must not be negative, got {i}")),
        Value::Integer(i) => Duration::from_millis(*i as u64),
        Value::String(s) => {
            let t = s.trim();
            let digits = t.bytes().take_while(u8::is_ascii_digit).count();
            let (num, unit) = t.split_at(digits);
            let n: u64 = num.parse().map_err(|_| expected())?;
            match unit.trim() {
                "" | "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "us" | "µs" => Duration::from_micros(n),
                "ns" => Duration::from_nanos(n),
                _ => return Err(expected()),
            }
        }
        _ => return Err(expected()),
    };
    if d > MAX_DURATION {
        return Err(format!(
            "must be at most {} ms (one hour)",
            MAX_DURATION.as_millis()
        ));
    }
    Ok(d)
}

fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Boolean(b) => Ok(*b),
        Value::Integer(0) => Ok(false),
        Value::Integer(1) => Ok(true),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("expected true or false, got {}", describe(v))),
        },
        other => Err(format!("expected true or false, got {}", describe(other))),
    }
}

fn ip(v: &Value) -> Result<IpAddr, String> {
    let s = text(v).map_err(|_| format!("expected an IP address, got {}", describe(v)))?;
    s.trim()
        .parse()
        .map_err(|_| format!("expected an IP address, got {}", describe(v)))
}

fn ip_version(v: &Value) -> Result<IpVersion, String> {
    let n = match v {
        Value::Integer(i) => Some(*i),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "4" | "ipv4" => Some(4),
            "6" | "ipv6" => Some(6),
            _ => None,
        },
        _ => None,
    };
    match n {
        Some(4) => Ok(IpVersion::V4),
        Some(6) => Ok(IpVersion::V6),
        _ => Err(format!("expected 4 or 6, got {}", describe(v))),
    }
}

/// `"10.0.0.2"`, `"10.0.0.2:5406"`, `"fd00::2"` or `"[fd00::2]:5406"`.
fn member_address(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let t = s.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    t.parse::<IpAddr>().map(|ip| (ip, None)).map_err(|_| {
        format!(
            "expected an IP address with an optional port (\"10.0.0.2\", \"10.0.0.2:5406\", \
             \"[fd00::2]:5406\"), got \"{}\"",
            s.escape_debug()
        )
    })
}

fn members(v: &Value) -> Result<Vec<MemberSpec>, ConfigError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| member(i, item))
            .collect(),
        // The compact form for environment variables and command lines.
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
            .map(|(i, p)| member(i, &Value::String(p.to_owned())))
            .collect(),
        other => Err(ConfigError::invalid(
            "members",
            format!(
                "expected an array of {{ node_id = ..., address = \"...\" }} tables, got {}",
                describe(other)
            ),
        )),
    }
}

fn member(i: usize, v: &Value) -> Result<MemberSpec, ConfigError> {
    let key = |field: &str| format!("members[{i}].{field}");
    match v {
        Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| !MEMBER_KEYS.contains(&k.as_str())) {
                let hint = closest(k, MEMBER_KEYS.iter().copied())
                    .map(|c| format!("did you mean '{}'?", key(c)))
                    .or_else(|| Some("a member has 'node_id' and 'address'".into()));
                return Err(ConfigError::unknown(key(k), hint));
            }
            let node_id = t
                .get("node_id")
                .ok_or_else(|| ConfigError::invalid(key("node_id"), "required"))?;
            let node_id = uint(node_id, u32::MAX.into())
                .map_err(|m| ConfigError::invalid(key("node_id"), m))?
                as u32;
            let address = t
                .get("address")
                .ok_or_else(|| ConfigError::invalid(key("address"), "required"))?;
            let (ip, port) = text(address)
                .and_then(member_address)
                .map_err(|m| ConfigError::invalid(key("address"), m))?;
            Ok(MemberSpec { node_id, ip, port })
        }
        Value::String(s) => {
            let (id, addr) = s.split_once('=').ok_or_else(|| {
                ConfigError::invalid(
                    format!("members[{i}]"),
                    format!(
                        "expected \"node_id=address\" such as \"2=10.0.0.2\", got \"{}\"",
                        s.escape_debug()
                    ),
                )
            })?;
            let node_id = uint(&Value::String(id.to_owned()), u32::MAX.into())
                .map_err(|m| ConfigError::invalid(key("node_id"), m))?
                as u32;
            let (ip, port) =
                member_address(addr).map_err(|m| ConfigError::invalid(key("address"), m))?;
            Ok(MemberSpec { node_id, ip, port })
        }
        other => Err(ConfigError::invalid(
            format!("members[{i}]"),
            format!(
                "expected a table {{ node_id = ..., address = \"...\" }}, got {}",
                describe(other)
            ),
        )),
    }
}

// ---------------------------------------------------------------------------
// Unknown keys and locations
// ---------------------------------------------------------------------------

/// The error for a key that does not exist, with the most useful hint we can find.
fn unknown_key(key: &str, flat: bool) -> ConfigError {
    let last = key.rsplit('.').next().unwrap_or(key);
    if let Some((_, hint)) = COROSYNC_HINTS.iter().find(|(k, _)| *k == last) {
        return ConfigError::unknown(key, Some(format!("Corosync's '{last}': {hint}")));
    }
    // The right name in the wrong place: `token` at the top of a file, `totem.port`, ...
    if let Some(k) = KEYS
        .iter()
        .find(|k| *k != &key && k.rsplit('.').next() == Some(last))
    {
        return ConfigError::unknown(key, Some(format!("did you mean '{k}'?")));
    }
    let candidates: Vec<String> = if key.starts_with("totem.") {
        KEYS.iter()
            .filter(|k| k.starts_with("totem."))
            .map(|k| k.to_string())
            .collect()
    } else {
        let mut c: Vec<String> = KEYS
            .iter()
            .filter(|k| !k.starts_with("totem.") || flat)
            .map(|k| k.to_string())
            .collect();
        c.push("totem".into());
        if flat {
            c.extend(
                KEYS.iter()
                    .filter_map(|k| k.strip_prefix("totem."))
                    .map(String::from),
            );
        }
        c
    };
    let hint = closest(key, candidates.iter().map(String::as_str)).map(|c| {
        // A flat totem alias is suggested by its canonical name.
        let canonical = KEYS
            .iter()
            .find(|k| k.strip_prefix("totem.") == Some(c))
            .copied()
            .unwrap_or(c);
        format!("did you mean '{canonical}'?")
    });
    ConfigError::unknown(key, hint)
}

/// The candidate nearest to `key`, if near enough to be a plausible typo.
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions, the most
/// common typo (`totme`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// 1-based line and character column of a byte offset.
fn location_of(text: &str, offset: usize) -> Location {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Records the location of every key (and of every array element) under its dotted path.
fn record_origins(
    text: &str,
    prefix: &str,
    table: &toml::de::DeTable<'_>,
    at: &mut BTreeMap<String, Location>,
) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        at.insert(path.clone(), location_of(text, k.span().start));
        record_value(text, &path, v, at);
    }
}

fn record_value(
    text: &str,
    path: &str,
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    at: &mut BTreeMap<String, Location>,
) {
    match v.get_ref() {
        toml::de::DeValue::Table(t) => record_origins(text, path, t, at),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                at.insert(p.clone(), location_of(text, item.span().start));
                record_value(text, &p, item, at);
            }
        }
        _ => {}
    }
}

/// Reads a config file of at most [`MAX_FILE_SIZE`] bytes as UTF-8.
fn read_limited(path: &Path) -> Result<String, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| ConfigError::io(path, e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::io(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(ConfigError::io(
            path,
            format!("larger than {MAX_FILE_SIZE} bytes; not a config file?"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        ConfigError::io(
            path,
            format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_setter() {
        for key in KEYS {
            let mut b = NodeConfig::builder();
            let v = match *key {
                "cluster_name" | "interface" | "authkey" => Value::from("x"),
                "bind" | "multicast_address" => Value::from("239.1.2.3"),
                "transport" => Value::from("udpu"),
                "crypto" => Value::from("none"),
                "members" => Value::Array(vec![]),
                "ip_version" => Value::from(4),
                "totem.cancel_token_hold_on_retransmit" => Value::from(true),
                _ => Value::from(100),
            };
            b.set_value(key, v).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    #[test]
    fn flat_aliases_do_not_collide_with_top_level_keys() {
        for k in KEYS.iter().filter_map(|k| k.strip_prefix("totem.")) {
            assert!(!KEYS.contains(&k), "{k}");
        }
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("totme", "totem"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("token", "token"), 0);
        assert_eq!(edit_distance("join", "jion"), 1);
    }

    #[test]
    fn locations_are_one_based_characters() {
        let t = "a = 1\nµb = 2\n";
        assert_eq!(location_of(t, 0), Location { line: 1, column: 1 });
        let off = t.find('b').unwrap();
        assert_eq!(location_of(t, off), Location { line: 2, column: 2 });
    }
}
