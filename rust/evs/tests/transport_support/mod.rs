//! Shared helpers of the transport tests: receiving with a deadline, and network namespaces.
#![allow(dead_code)] // each test crate uses a different subset

use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use evs::transport::{RecvBatch, Transport, TransportConfig};

/// Everything `t` receives until `want` datagrams arrived or `timeout` passed, in order.
pub async fn recv_until(
    t: &Transport,
    want: usize,
    timeout: Duration,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut batch = RecvBatch::new(32);
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, t.readable()).await {
            Ok(r) => r.expect("readable"),
            Err(_) => break,
        }
        t.recv_batch(&mut batch).expect("recv_batch");
        got.extend(batch.iter().map(|(a, d)| (a, d.to_vec())));
    }
    got
}

/// Everything that arrives within `d` (to show that nothing more does).
pub async fn recv_for(t: &Transport, d: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    recv_until(t, usize::MAX, d).await
}

/// A port that was free on `ip` a moment ago (tests bind it right after).
pub fn free_port(ip: &str) -> u16 {
    let s = std::net::UdpSocket::bind((ip, 0)).expect("probe bind");
    s.local_addr().unwrap().port()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made with `ip netns add`, deleted on drop (also when the test panics,
/// since tests unwind). Deleting it also destroys the interfaces inside, veth ends included.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace, or `None` (after printing why the test skips) when this process may
    /// not create one: it needs root (CAP_SYS_ADMIN) and iproute2's `ip`.
    pub fn new(test: &str) -> Option<Netns> {
        let name = format!(
            "evs-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(out) if out.status.success() => Some(Netns { name }),
            Ok(out) => {
                eprintln!(
                    "SKIP {test}: `ip netns add` failed (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIP {test}: cannot run `ip` (iproute2 missing?): {e}");
                None
            }
        }
    }

    /// Runs `ip -n <ns> <args>`; panics with ip's message on failure.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Loopback up and multicast-capable (a fresh `lo` lacks the MULTICAST flag). IPv4 only:
    /// Linux does not deliver IPv6 multicast sent over `lo` (it has no IPv6 multicast route,
    /// and even with one added nothing arrives), so IPv6 tests use a veth interface.
    pub fn loopback_multicast(&self) {
        self.ip(&["link", "set", "lo", "up"]);
        self.ip(&["link", "set", "lo", "multicast", "on"]);
    }

    /// Output of `ip -n <ns> <args>`.
    pub fn ip_output(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `dev` has carrier and its IPv6 multicast route: the end of a veth pair
    /// brought up before its peer gets carrier only when the kernel's link watcher runs (up
    /// to a second later), and IPv6 adds the route only then.
    pub fn wait_link(&self, dev: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let link = self.ip_output(&["link", "show", "dev", dev]);
            let routes = self.ip_output(&["-6", "route", "show", "table", "local"]);
            let ready =
                link.contains("state UP") && routes.contains(&format!("ff00::/8 dev {dev}"));
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{dev} in {} never came up: {link}{routes}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Binds a transport whose sockets live in this namespace. A short-lived thread switches
    /// itself into the namespace (setns affects only the calling thread) and creates the
    /// sockets there; sockets keep their namespace for life, so the transport is then used
    /// from the test's runtime like any other.
    pub fn bind(&self, cfg: TransportConfig) -> io::Result<Transport> {
        let handle = tokio::runtime::Handle::current();
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let _rt = handle.enter();
            Transport::bind(cfg)
        })
        .join()
        .expect("bind thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair `eva` (in `a`) / `evb` (in `b`), with
/// 10.199.0.1/24 + fd00:199::1/64 on `eva` and .2 / ::2 on `evb` (IPv6 without duplicate
/// address detection, so the addresses are usable at once).
pub fn veth_pair(test: &str) -> Option<(Netns, Netns)> {
    let a = Netns::new(test)?;
    let b = Netns::new(test)?;
    a.ip(&[
        "link", "add", "eva", "type", "veth", "peer", "name", "evb", "netns", &b.name,
    ]);
    for (ns, dev, v4, v6) in [
        (&a, "eva", "10.199.0.1/24", "fd00:199::1/64"),
        (&b, "evb", "10.199.0.2/24", "fd00:199::2/64"),
    ] {
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["addr", "add", v4, "dev", dev]);
        ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    a.wait_link("eva");
    b.wait_link("evb");
    Some((a, b))
}
