//! Parsing TOML into a `NodeConfig`: the example file, defaults, round trips, syntax errors,
//! files.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use evs::config::{ConfigErrorKind, IpVersion, Location, Member, NodeConfig, Transport};
use evs::crypto::Cipher;

const EXAMPLE: &str = include_str!("../examples/evs.toml");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn example_file_parses_to_the_expected_values() {
    let c = NodeConfig::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(c.cluster_name(), "evs");
    assert_eq!(c.node_id(), 1);
    assert_eq!(c.bind(), ip("192.168.1.10"));
    assert_eq!(c.bind_addr(), sa("192.168.1.10:5405"));
    assert_eq!(c.interface(), None);
    assert_eq!(c.ip_version(), IpVersion::V4);
    assert_eq!(c.port(), 5405);
    assert_eq!(c.transport(), Transport::Udpu);
    assert_eq!(c.multicast_address(), None);
    assert_eq!(
        c.members(),
        &[
            Member {
                node_id: 1,
                address: sa("192.168.1.10:5405")
            },
            Member {
                node_id: 2,
                address: sa("192.168.1.11:5405")
            },
            Member {
                node_id: 3,
                address: sa("192.168.1.12:5406")
            },
        ]
    );
    assert_eq!(c.crypto(), Cipher::Aes256Gcm);
    assert_eq!(c.authkey(), Some(Path::new("/etc/evs/authkey")));
    assert_eq!(c.max_message_size(), 1 << 20);
    assert_eq!(c.send_queue_bytes(), 1 << 20);
    // The example spells out the defaults, so the protocol config is the default one.
    assert_eq!(c.totem(), totem::Config::default());
    assert_eq!(c.max_datagram_size(), 1400 + 46);
    assert_eq!(c.max_ip_packet(), 1474);
}

#[test]
fn example_file_loads_from_disk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/evs.toml");
    let c = NodeConfig::load(&path).unwrap();
    assert_eq!(c, NodeConfig::from_toml_str(EXAMPLE).unwrap());
}

#[test]
fn omitted_keys_take_corosync_3x_defaults() {
    let c = NodeConfig::from_toml_str("bind = \"10.1.2.3\"\ncrypto = \"none\"\n").unwrap();
    assert_eq!(c.cluster_name(), "evs");
    assert_eq!(c.node_id(), 0x0A01_0203);
    assert_eq!(c.port(), 5405);
    assert_eq!(c.transport(), Transport::Multicast);
    assert_eq!(c.multicast_address(), None, "None: the runtime derives it");
    assert_eq!(c.multicast_ttl(), 1);
    assert!(c.members().is_empty());
    assert_eq!(c.crypto(), Cipher::None);
    assert_eq!(c.authkey(), None);
    assert_eq!(c.max_message_size(), 1_048_576);
    assert_eq!(c.send_queue_bytes(), 1_048_576);

    let t = c.totem();
    assert_eq!(t, totem::Config::default());
    // Corosync 3.x totem defaults, spelled out.
    assert_eq!(t.token, ms(3000));
    assert_eq!(t.token_coefficient, ms(650));
    assert_eq!(t.token_retransmits_before_loss_const, 4);
    assert_eq!(t.token_warning, 75);
    assert_eq!(t.join, ms(50));
    assert_eq!(t.send_join, Duration::ZERO);
    assert_eq!(t.merge, ms(200));
    assert_eq!(t.downcheck, ms(1000));
    assert_eq!(t.fail_recv_const, 2500);
    assert_eq!(t.seqno_unchanged_const, 30);
    assert_eq!(t.miss_count_const, 5);
    assert_eq!(t.window_size, 50);
    assert_eq!(t.max_messages, 17);
    assert_eq!(t.heartbeat_failures_allowed, 0);
    assert_eq!(t.max_network_delay, ms(50));
    assert!(!t.cancel_token_hold_on_retransmit);
    assert_eq!(
        (t.token_retransmit, t.hold, t.consensus),
        (None, None, None)
    );
    let derived = t.timeouts(2);
    assert_eq!(derived.token_retransmit.as_millis(), 714);
    assert_eq!(derived.hold.as_millis(), 561);
    assert_eq!(derived.consensus, ms(3600));
}

#[test]
fn multicast_keys_parse() {
    let c = NodeConfig::from_toml_str(
        r#"
        cluster_name = "prod-db"
        bind = "fd00::2:1"
        port = 6000
        transport = "multicast"
        multicast_address = "ff15::1234"
        multicast_ttl = 4
        crypto = "chacha20poly1305"
        authkey = "keys/authkey"

        [totem]
        token = "5s"
        consensus = 7000
        hold = 100
        token_retransmit = "1200ms"
        heartbeat_failures_allowed = 3
        cancel_token_hold_on_retransmit = true
        "#,
    )
    .unwrap();
    assert_eq!(c.cluster_name(), "prod-db");
    assert_eq!(c.node_id(), 0x0002_0001, "low 31 bits of the IPv6 address");
    assert_eq!(c.ip_version(), IpVersion::V6);
    assert_eq!(c.bind_addr(), sa("[fd00::2:1]:6000"));
    assert_eq!(c.multicast_address(), Some(ip("ff15::1234")));
    assert_eq!(c.multicast_ttl(), 4);
    assert_eq!(c.crypto(), Cipher::ChaCha20Poly1305);
    assert_eq!(c.authkey(), Some(Path::new("keys/authkey")));
    let t = c.totem();
    assert_eq!(t.token, ms(5000));
    assert_eq!(t.consensus, Some(ms(7000)));
    assert_eq!(t.hold, Some(ms(100)));
    assert_eq!(t.token_retransmit, Some(ms(1200)));
    assert_eq!(t.heartbeat_failures_allowed, 3);
    assert!(t.cancel_token_hold_on_retransmit);
    assert_eq!(c.max_ip_packet(), 1400 + 46 + 8 + 40);
}

#[test]
fn dotted_totem_keys_equal_the_table() {
    let a = NodeConfig::from_toml_str(
        "bind = \"10.1.2.3\"\ncrypto = \"none\"\ntotem.token = 1000\ntotem.join = 60\n",
    )
    .unwrap();
    let b = NodeConfig::from_toml_str(
        "bind = \"10.1.2.3\"\ncrypto = \"none\"\n[totem]\ntoken = 1000\njoin = 60\n",
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.totem().token, ms(1000));
}

#[test]
fn to_toml_string_round_trips() {
    let configs = [
        NodeConfig::from_toml_str(EXAMPLE).unwrap(),
        NodeConfig::from_toml_str(
            "bind = \"10.1.2.3\"\ncrypto = \"none\"\nmulticast_address = \"239.192.0.9\"\n\
             [totem]\ntoken = 1000\nconsensus = 2000\ninitial_seq = 9223372036854775807\nsort_queue_capacity = \"18446744073709551615\"\n",
        )
        .unwrap(),
        NodeConfig::builder()
            .bind(ip("fd00::7"))
            .crypto(Cipher::None)
            .token(Duration::from_micros(30_500))
            .join(Duration::from_nanos(50_000_001))
            .build()
            .unwrap(),
    ];
    for c in configs {
        let text = c.to_toml_string();
        let back = NodeConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, c, "{text}");
        assert_eq!(c.to_builder().build().unwrap(), c);
    }
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = NodeConfig::from_toml_str("cluster_name = \"evs\"\nbind = \n").unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert_eq!(e.key, "");
    assert_eq!(e.location.map(|l| l.line), Some(2));
    let shown = e.to_string();
    assert!(shown.starts_with("line 2, column "), "{shown}");
    assert!(shown.contains("TOML syntax error"), "{shown}");

    let e = NodeConfig::from_toml_str("port = 1\nport = 2\n").unwrap_err();
    assert_eq!(
        e.kind,
        ConfigErrorKind::Syntax,
        "duplicate keys are TOML errors"
    );
    assert_eq!(e.location.map(|l| l.line), Some(2), "{e}");
}

#[test]
fn value_errors_point_at_the_key() {
    let text = "bind = \"10.1.2.3\"\ncrypto = \"none\"\n\n[totem]\njoin = 60\n  token = 5\n";
    let e = NodeConfig::from_toml_str(text).unwrap_err();
    assert_eq!(e.key, "totem.token");
    assert_eq!(e.location, Some(Location { line: 6, column: 3 }));
    assert_eq!(
        e.to_string(),
        "line 6, column 3: invalid config key 'totem.token': 5ms is below the minimum of 30ms"
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evs.toml");
    std::fs::write(&path, "bind = \"10.1.2.3\"\ncrypto = \"none\"\nport = 0\n").unwrap();
    let e = NodeConfig::load(&path).unwrap_err();
    assert_eq!(e.key, "port");
    assert_eq!(e.path.as_deref(), Some(path.as_path()));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:1: invalid config key 'port': must be within 1..=65535",
            path.display()
        )
    );

    std::fs::write(&path, "bind = [\n").unwrap();
    let e = NodeConfig::load(&path).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert!(
        e.to_string().starts_with(&format!("{}:", path.display())),
        "{e}"
    );

    let missing = dir.path().join("missing.toml");
    let e = NodeConfig::load(&missing).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Io);
    assert!(e.to_string().contains("missing.toml"), "{e}");

    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat((1 << 20) + 1)).unwrap();
    assert_eq!(
        NodeConfig::load(&big).unwrap_err().kind,
        ConfigErrorKind::Io
    );

    std::fs::write(&path, b"cluster_name = \"\xff\"\n").unwrap();
    assert_eq!(
        NodeConfig::load(&path).unwrap_err().kind,
        ConfigErrorKind::Io
    );
}

#[test]
fn send_queue_grows_to_max_message_size_unless_given() {
    let base = "bind = \"10.1.2.3\"\ncrypto = \"none\"\n";
    // Not given: at least max_message_size.
    let c = NodeConfig::from_toml_str(&format!("{base}max_message_size = 8388608\n")).unwrap();
    assert_eq!(c.send_queue_bytes(), 8 << 20);
    let c = NodeConfig::from_toml_str(&format!("{base}max_message_size = 4096\n")).unwrap();
    assert_eq!(c.send_queue_bytes(), 1 << 20);
    // Given: taken as it is, and refused below max_message_size.
    let c = NodeConfig::from_toml_str(&format!(
        "{base}max_message_size = 4096\nsend_queue_bytes = 65536\n"
    ))
    .unwrap();
    assert_eq!(c.send_queue_bytes(), 65536);
    let e = NodeConfig::from_toml_str(&format!(
        "{base}max_message_size = 8388608\nsend_queue_bytes = 2097152\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "send_queue_bytes");
    // The builder's setter counts as given too.
    let mut b = NodeConfig::builder();
    b.bind(ip("10.1.2.3"))
        .crypto(Cipher::None)
        .max_message_size(8 << 20)
        .send_queue_bytes(2 << 20);
    assert_eq!(b.build().unwrap_err().key, "send_queue_bytes");
    let mut b = NodeConfig::builder();
    b.bind(ip("10.1.2.3"))
        .crypto(Cipher::None)
        .max_message_size(8 << 20);
    assert_eq!(b.build().unwrap().send_queue_bytes(), 8 << 20);
}

#[test]
fn delivery_buffer_is_auto_unless_given_in_bytes() {
    use evs::config::DeliveryBuffer;
    let base = "bind = \"10.1.2.3\"\ncrypto = \"none\"\n";
    let c = NodeConfig::from_toml_str(base).unwrap();
    assert_eq!(c.delivery_buffer(), DeliveryBuffer::Auto);
    for (text, want) in [
        ("\"auto\"", DeliveryBuffer::Auto),
        ("0", DeliveryBuffer::Bytes(0)),
        ("8388608", DeliveryBuffer::Bytes(8 << 20)),
        ("\"65536\"", DeliveryBuffer::Bytes(65536)),
    ] {
        let c =
            NodeConfig::from_toml_str(&format!("{base}delivery_buffer_bytes = {text}\n")).unwrap();
        assert_eq!(c.delivery_buffer(), want, "{text}");
        // And back through TOML.
        let again = NodeConfig::from_toml_str(&c.to_toml_string()).unwrap();
        assert_eq!(again.delivery_buffer(), want, "{text}");
    }
    let mut b = NodeConfig::builder();
    b.bind(ip("10.1.2.3"))
        .crypto(evs::crypto::Cipher::None)
        .delivery_buffer_bytes(DeliveryBuffer::Bytes(0));
    assert_eq!(
        b.build().unwrap().delivery_buffer(),
        DeliveryBuffer::Bytes(0)
    );
}
