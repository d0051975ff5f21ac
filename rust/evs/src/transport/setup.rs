//! Socket creation: validation, interface resolution, socket options, bind and join.
//!
//! Everything here is blocking-free and runs once in `Transport::bind`. Each error says which
//! step failed and for which address, keeping the original `ErrorKind` (so `AddrInUse` stays
//! recognisable).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use super::{Mode, TransportConfig};

pub(super) struct Built {
    pub unicast: std::net::UdpSocket,
    pub group: Option<std::net::UdpSocket>,
    pub group_addr: Option<SocketAddr>,
    pub recv_buffer: usize,
    pub send_buffer: usize,
}

/// An I/O error with what was being done; its `source` is the original error, so the OS error
/// number survives (see [`crate::os_errno`]).
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        e.kind(),
        Context {
            what: what.to_string(),
            source: e,
        },
    )
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Where multicast is joined and sent.
#[derive(Debug, Default)]
struct Iface {
    /// Interface index (0 = let the kernel choose).
    index: u32,
    /// IPv4: the interface address for `IP_MULTICAST_IF` / `IP_ADD_MEMBERSHIP`
    /// (unspecified = let the kernel choose).
    v4: Option<Ipv4Addr>,
}

pub(super) fn open(cfg: &TransportConfig) -> io::Result<Built> {
    validate(cfg)?;
    let index = match &cfg.interface {
        Some(name) => nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such interface {name:?}: {e}"),
            )
        })?,
        None => 0,
    };
    let iface = resolve_iface(cfg, index)?;
    let multicast = matches!(cfg.mode, Mode::Multicast { .. });

    // The unicast socket: sends everything, receives unicasts.
    let mut bind_addr = SocketAddr::new(cfg.bind, cfg.port);
    if let (SocketAddr::V6(v6), true) = (&mut bind_addr, needs_scope(cfg.bind)) {
        // A link-local address means nothing without its link.
        let scope = if iface.index != 0 {
            iface.index
        } else {
            return Err(invalid(format!(
                "link-local bind address {} needs `interface`",
                cfg.bind
            )));
        };
        v6.set_scope_id(scope);
    }
    let domain = Domain::for_address(bind_addr);
    let unicast = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| context(e, "create UDP socket"))?;
    if cfg.bind.is_ipv6() {
        // Separate families keep address comparisons (own address, address book) exact.
        unicast
            .set_only_v6(true)
            .map_err(|e| context(e, "set IPV6_V6ONLY"))?;
    }
    if multicast && cfg.bind.is_unspecified() {
        // A wildcard unicast socket overlaps the group socket's `group:port`; both need
        // SO_REUSEADDR to coexist. (Specific addresses do not overlap, and then we leave it
        // off so a duplicate node is refused.)
        unicast
            .set_reuse_address(true)
            .map_err(|e| context(e, "set SO_REUSEADDR"))?;
    }
    let (recv_buffer, send_buffer) = set_buffers(&unicast, cfg.recv_buffer, cfg.send_buffer);
    if let Mode::Multicast { ttl, loopback, .. } = cfg.mode {
        multicast_send_options(&unicast, cfg.bind, &iface, ttl, loopback)?;
        // Never receive group traffic here (see the module docs). Best effort: only Linux
        // has the option, and only a wildcard-bound socket could be affected.
        let _ = if cfg.bind.is_ipv4() {
            unicast.set_multicast_all_v4(false)
        } else {
            unicast.set_multicast_all_v6(false)
        };
    }
    unicast
        .bind(&SockAddr::from(bind_addr))
        .map_err(|e| context(e, format_args!("bind unicast socket to {bind_addr}")))?;
    unicast
        .set_nonblocking(true)
        .map_err(|e| context(e, "set O_NONBLOCK"))?;
    let local = unicast
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("unicast socket has no IP address"))?;

    let mut built = Built {
        unicast: unicast.into(),
        group: None,
        group_addr: None,
        recv_buffer,
        send_buffer,
    };
    if let Mode::Multicast { group, .. } = cfg.mode {
        // Port 0 asked for a free port: the group must then use the one the kernel picked.
        let group_addr = SocketAddr::new(group, local.port());
        let sock = open_group(cfg, group_addr, &iface)?;
        if let (SocketAddr::V4(own), false) = (local, cfg.receive_own_multicasts) {
            if !own.ip().is_unspecified() {
                // Best effort: without the filter our copies are still dropped, by the driver.
                if let Err(e) = sock.attach_filter(&own_source_filter(own)) {
                    tracing::debug!(error = %e, "no socket filter for our own multicasts");
                }
            }
        }
        built.group = Some(sock.into());
        built.group_addr = Some(group_addr);
    }
    Ok(built)
}

fn validate(cfg: &TransportConfig) -> io::Result<()> {
    if cfg.bind.is_multicast() {
        return Err(invalid(format!(
            "bind address {} is a multicast address; give the node's own address",
            cfg.bind
        )));
    }
    match &cfg.mode {
        Mode::Multicast { group, ttl, .. } => {
            if !group.is_multicast() {
                return Err(invalid(format!(
                    "multicast group {group} is not a multicast address"
                )));
            }
            if group.is_ipv4() != cfg.bind.is_ipv4() {
                return Err(invalid(format!(
                    "multicast group {group} and bind address {} are of different IP versions",
                    cfg.bind
                )));
            }
            if *ttl > 255 {
                return Err(invalid(format!("multicast ttl {ttl} is above 255")));
            }
        }
        Mode::Udpu { members } => {
            for (i, &(node, addr)) in members.iter().enumerate() {
                if addr.is_ipv4() != cfg.bind.is_ipv4() {
                    return Err(invalid(format!(
                        "udpu member {node} at {addr} and bind address {} are of different IP \
                         versions",
                        cfg.bind
                    )));
                }
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    return Err(invalid(format!(
                        "udpu member {node} has no usable address ({addr})"
                    )));
                }
                if members[..i].iter().any(|&(n, _)| n == node) {
                    return Err(invalid(format!("udpu member {node} is listed twice")));
                }
            }
        }
    }
    Ok(())
}

fn needs_scope(ip: IpAddr) -> bool {
    match ip {
        // fe80::/10
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// Finds the interface for multicast: the named one, else the one that owns `bind`.
fn resolve_iface(cfg: &TransportConfig, index: u32) -> io::Result<Iface> {
    let multicast = matches!(cfg.mode, Mode::Multicast { .. });
    if !multicast && !needs_scope(cfg.bind) {
        return Ok(Iface::default());
    }
    let mut iface = Iface { index, v4: None };
    match cfg.bind {
        IpAddr::V4(ip) if !ip.is_unspecified() => iface.v4 = Some(ip),
        IpAddr::V4(_) => {
            // No address to name the interface by: take the named interface's first IPv4
            // address (IP_MULTICAST_IF wants an address); without a name the kernel chooses.
            if let Some(name) = &cfg.interface {
                iface.v4 =
                    Some(first_v4_of(name)?.ok_or_else(|| {
                        invalid(format!("interface {name:?} has no IPv4 address"))
                    })?);
            }
        }
        IpAddr::V6(ip) => {
            if iface.index == 0 && !ip.is_unspecified() {
                iface.index = owner_of_v6(ip)?.unwrap_or(0);
            }
        }
    }
    Ok(iface)
}

fn first_v4_of(name: &str) -> io::Result<Option<Ipv4Addr>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| context(e.into(), "getifaddrs"))?;
    Ok(addrs
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip())))
}

/// The index of the interface carrying `ip`, if any (IPv6 joins and sends by index).
fn owner_of_v6(ip: Ipv6Addr) -> io::Result<Option<u32>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| context(e.into(), "getifaddrs"))?;
    for a in addrs {
        let Some(sa) = a.address.as_ref().and_then(|s| s.as_sockaddr_in6()) else {
            continue;
        };
        if sa.ip() == ip {
            let index = nix::net::if_::if_nametoindex(a.interface_name.as_str())
                .map_err(|e| context(e.into(), format_args!("index of {}", a.interface_name)))?;
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Asks for the buffers (best effort: the kernel silently caps at `net.core.[rw]mem_max`)
/// and reports what was granted.
fn set_buffers(sock: &Socket, recv: usize, send: usize) -> (usize, usize) {
    if recv > 0 {
        let _ = sock.set_recv_buffer_size(recv);
    }
    if send > 0 {
        let _ = sock.set_send_buffer_size(send);
    }
    (
        sock.recv_buffer_size().unwrap_or(0),
        sock.send_buffer_size().unwrap_or(0),
    )
}

fn multicast_send_options(
    sock: &Socket,
    bind: IpAddr,
    iface: &Iface,
    ttl: u32,
    loopback: bool,
) -> io::Result<()> {
    if bind.is_ipv4() {
        if let Some(ip) = iface.v4 {
            sock.set_multicast_if_v4(&ip)
                .map_err(|e| context(e, format_args!("set IP_MULTICAST_IF to {ip}")))?;
        }
        sock.set_multicast_ttl_v4(ttl)
            .map_err(|e| context(e, "set IP_MULTICAST_TTL"))?;
        sock.set_multicast_loop_v4(loopback)
            .map_err(|e| context(e, "set IP_MULTICAST_LOOP"))?;
    } else {
        if iface.index != 0 {
            sock.set_multicast_if_v6(iface.index).map_err(|e| {
                context(
                    e,
                    format_args!("set IPV6_MULTICAST_IF to interface {}", iface.index),
                )
            })?;
        }
        sock.set_multicast_hops_v6(ttl)
            .map_err(|e| context(e, "set IPV6_MULTICAST_HOPS"))?;
        sock.set_multicast_loop_v6(loopback)
            .map_err(|e| context(e, "set IPV6_MULTICAST_LOOP"))?;
    }
    Ok(())
}

/// A classic BPF program for the group socket that drops datagrams sent from `own` (this
/// node's unicast socket, from which all its multicasts leave) and accepts everything else.
///
/// `IP_MULTICAST_LOOP` must stay on so that other nodes on the host hear us, but it also hands
/// every multicast we send back to our own group socket. Dropping those copies in the kernel
/// saves their queueing, the copy to user space and a receive slot each (a third of all
/// datagrams received in a 3-node ring where everyone sends). Other nodes on the host have
/// other bind addresses (they share the group port), so only our own copies match.
///
/// A socket filter of a UDP socket sees the datagram from its UDP header on (offset 0 is the
/// source port); the IPv4 source address is read relative to the network header
/// (`SKF_NET_OFF`).
fn own_source_filter(own: std::net::SocketAddrV4) -> [socket2::SockFilter; 6] {
    use socket2::SockFilter;
    // Classic BPF opcodes (linux/filter.h).
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SKF_NET_OFF: i32 = -0x10_0000;
    const IPV4_SRC: i32 = 12;
    [
        SockFilter::new(LD_W_ABS, 0, 0, (SKF_NET_OFF + IPV4_SRC) as u32),
        // Not our address: accept (skip to the last instruction).
        SockFilter::new(JEQ_K, 0, 3, u32::from(*own.ip())),
        SockFilter::new(LD_H_ABS, 0, 0, 0),
        SockFilter::new(JEQ_K, 0, 1, u32::from(own.port())),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ]
}

/// The group socket: bound to `group:port` with SO_REUSEADDR, joined on the interface.
fn open_group(cfg: &TransportConfig, group_addr: SocketAddr, iface: &Iface) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(group_addr),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| context(e, "create UDP group socket"))?;
    if group_addr.is_ipv6() {
        sock.set_only_v6(true)
            .map_err(|e| context(e, "set IPV6_V6ONLY"))?;
    }
    // Every node on the host binds the same group:port; the kernel copies each multicast to
    // all of them.
    sock.set_reuse_address(true)
        .map_err(|e| context(e, "set SO_REUSEADDR on the group socket"))?;
    let _ = set_buffers(&sock, cfg.recv_buffer, 0);
    // Only the group we join, not every group some other socket on the host joined.
    let _ = if group_addr.is_ipv4() {
        sock.set_multicast_all_v4(false)
    } else {
        sock.set_multicast_all_v6(false)
    };
    sock.bind(&SockAddr::from(group_addr))
        .map_err(|e| context(e, format_args!("bind group socket to {group_addr}")))?;
    let where_ = match (&cfg.interface, iface.v4) {
        (Some(name), _) => format!("interface {name:?}"),
        (None, Some(ip)) => format!("interface of {ip}"),
        (None, None) if iface.index != 0 => format!("interface #{}", iface.index),
        (None, None) => "the default interface".to_string(),
    };
    let joined = match group_addr.ip() {
        IpAddr::V4(group) => {
            if iface.index != 0 {
                sock.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(iface.index))
            } else {
                sock.join_multicast_v4(&group, &iface.v4.unwrap_or(Ipv4Addr::UNSPECIFIED))
            }
        }
        IpAddr::V6(group) => sock.join_multicast_v6(&group, iface.index),
    };
    joined.map_err(|e| {
        context(
            e,
            format_args!(
                "join multicast group {} on {where_} (does it have the MULTICAST flag and an \
                 address?)",
                group_addr.ip()
            ),
        )
    })?;
    sock.set_nonblocking(true)
        .map_err(|e| context(e, "set O_NONBLOCK"))?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_message_and_the_os_error_number() {
        let e = context(
            io::Error::from_raw_os_error(98),
            "bind unicast socket to 10.0.0.1:5405",
        );
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e
            .to_string()
            .starts_with("bind unicast socket to 10.0.0.1:5405: "));
        assert!(e.to_string().ends_with("(os error 98)"));
        assert_eq!(crate::os_errno(&e), Some(98));
        // Twice wrapped, and an error without a number.
        assert_eq!(crate::os_errno(&context(e, "start")), Some(98));
        assert_eq!(crate::os_errno(&invalid("bad".into())), None);
    }
}
