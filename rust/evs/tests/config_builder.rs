//! The Rust builder and the string-keyed entry points: same keys, same results as TOML.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use evs::config::{
    node_id_from_address, ConfigErrorKind, IpVersion, MemberSpec, NodeConfig, Transport, KEYS,
};
use evs::crypto::Cipher;
use toml::Value;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const TOML: &str = r#"
cluster_name = "lab"
bind = "10.0.0.2"
port = 5500
transport = "udpu"
members = [
    { node_id = 3, address = "10.0.0.3:5501" },
    { node_id = 1, address = "10.0.0.1" },
    { node_id = 2, address = "10.0.0.2" },
]
crypto = "chacha20poly1305"
authkey = "/etc/evs/authkey"
max_message_size = 65536
send_queue_bytes = 262144

[totem]
token = 1000
token_coefficient = 0
token_retransmits_before_loss_const = 10
token_retransmit = 90
hold = 70
token_warning = 0
join = 40
send_join = 10
consensus = 1500
merge = 300
downcheck = 2000
fail_recv_const = 100
seqno_unchanged_const = 10
miss_count_const = 3
window_size = 100
max_messages = 20
heartbeat_failures_allowed = 2
max_network_delay = 40
cancel_token_hold_on_retransmit = true
max_packet_size = 8900
retransmit_list_max = 40
sort_queue_capacity = 4096
initial_seq = 4294967000
"#;

#[test]
fn builder_and_toml_give_equal_configs() {
    let from_toml = NodeConfig::from_toml_str(TOML).unwrap();
    let built = NodeConfig::builder()
        .cluster_name("lab")
        .bind(ip("10.0.0.2"))
        .port(5500)
        .transport(Transport::Udpu)
        .members([
            MemberSpec::new(3, ip("10.0.0.3")).with_port(5501),
            MemberSpec::new(1, ip("10.0.0.1")),
            MemberSpec::new(2, ip("10.0.0.2")),
        ])
        .crypto(Cipher::ChaCha20Poly1305)
        .authkey("/etc/evs/authkey")
        .max_message_size(65536)
        .send_queue_bytes(262_144)
        .token(ms(1000))
        .token_coefficient(ms(0))
        .token_retransmits_before_loss_const(10)
        .token_retransmit(ms(90))
        .hold(ms(70))
        .token_warning(0)
        .join(ms(40))
        .send_join(ms(10))
        .consensus(ms(1500))
        .merge(ms(300))
        .downcheck(ms(2000))
        .fail_recv_const(100)
        .seqno_unchanged_const(10)
        .miss_count_const(3)
        .window_size(100)
        .max_messages(20)
        .heartbeat_failures_allowed(2)
        .max_network_delay(ms(40))
        .cancel_token_hold_on_retransmit(true)
        .max_packet_size(8900)
        .retransmit_list_max(40)
        .sort_queue_capacity(4096)
        .initial_seq(4_294_967_000)
        .build()
        .unwrap();
    assert_eq!(built, from_toml);

    // Every value differs from its default, so each key really arrived.
    assert_eq!(built.node_id(), 2, "udpu: the member at bind:port");
    let ids: Vec<u32> = built.members().iter().map(|m| m.node_id).collect();
    assert_eq!(ids, [1, 2, 3], "members are sorted by node id");
    assert_eq!(built.members()[0].address, sa("10.0.0.1:5500"));
    assert_eq!(built.members()[2].address, sa("10.0.0.3:5501"));
    let t = built.totem();
    let d = totem::Config::default();
    assert_ne!(t.token, d.token);
    assert_ne!(t.token_coefficient, d.token_coefficient);
    assert_ne!(
        t.token_retransmits_before_loss_const,
        d.token_retransmits_before_loss_const
    );
    assert_ne!(t.token_retransmit, d.token_retransmit);
    assert_ne!(t.hold, d.hold);
    assert_ne!(t.token_warning, d.token_warning);
    assert_ne!(t.join, d.join);
    assert_ne!(t.send_join, d.send_join);
    assert_ne!(t.consensus, d.consensus);
    assert_ne!(t.merge, d.merge);
    assert_ne!(t.downcheck, d.downcheck);
    assert_ne!(t.fail_recv_const, d.fail_recv_const);
    assert_ne!(t.seqno_unchanged_const, d.seqno_unchanged_const);
    assert_ne!(t.miss_count_const, d.miss_count_const);
    assert_ne!(t.window_size, d.window_size);
    assert_ne!(t.max_messages, d.max_messages);
    assert_ne!(t.heartbeat_failures_allowed, d.heartbeat_failures_allowed);
    assert_ne!(t.max_network_delay, d.max_network_delay);
    assert_ne!(
        t.cancel_token_hold_on_retransmit,
        d.cancel_token_hold_on_retransmit
    );
    assert_ne!(t.max_packet_size, d.max_packet_size);
    assert_ne!(t.max_message_size, d.max_message_size);
    assert_ne!(t.send_queue_bytes, d.send_queue_bytes);
    assert_ne!(t.retransmit_list_max, d.retransmit_list_max);
    assert_ne!(t.sort_queue_capacity, d.sort_queue_capacity);
    assert_ne!(t.initial_seq, d.initial_seq);
}

#[test]
fn set_value_with_canonical_keys_equals_toml() {
    let doc: toml::Table = TOML.parse().unwrap();
    let mut b = NodeConfig::builder();
    for (k, v) in &doc {
        if let Value::Table(t) = v {
            for (k2, v2) in t {
                b.set_value(&format!("{k}.{k2}"), v2.clone()).unwrap();
            }
        } else {
            b.set_value(k, v.clone()).unwrap();
        }
    }
    assert_eq!(b.build().unwrap(), NodeConfig::from_toml_str(TOML).unwrap());
}

#[test]
fn set_value_accepts_flat_aliases_strings_and_integers() {
    let mut b = NodeConfig::builder();
    b.set_value("bind", "10.1.2.3")
        .unwrap()
        .set_value("crypto", "none")
        .unwrap()
        .set_value("port", "5406")
        .unwrap()
        .set_value("node_id", 7)
        .unwrap()
        .set_value("token", 1000)
        .unwrap()
        .set_value("totem.join", "60")
        .unwrap()
        .set_value("merge", "1s")
        .unwrap()
        .set_value("consensus", "1500ms")
        .unwrap()
        .set_value("window_size", "80")
        .unwrap()
        .set_value("cancel_token_hold_on_retransmit", "yes")
        .unwrap()
        .set_value("max_message_size", 4096)
        .unwrap()
        .set_value("ip_version", "ipv4")
        .unwrap();
    let c = b.build().unwrap();
    assert_eq!(c.port(), 5406);
    assert_eq!(c.node_id(), 7);
    let t = c.totem();
    assert_eq!(t.token, ms(1000));
    assert_eq!(t.join, ms(60));
    assert_eq!(t.merge, ms(1000));
    assert_eq!(t.consensus, Some(ms(1500)));
    assert_eq!(t.window_size, 80);
    assert!(t.cancel_token_hold_on_retransmit);
    assert_eq!(c.max_message_size(), 4096);

    // A `totem` table, as Python's `totem={"token": 2000}` would pass it.
    let mut totem = toml::Table::new();
    totem.insert("token".into(), Value::Integer(1400));
    b.set_value("totem", totem).unwrap();
    assert_eq!(b.build().unwrap().totem().token, ms(1400));
}

#[test]
fn set_value_errors_name_the_canonical_key() {
    let mut b = NodeConfig::builder();
    let cases: [(&str, Value, &str, ConfigErrorKind); 10] = [
        (
            "token",
            "abc".into(),
            "totem.token",
            ConfigErrorKind::InvalidValue,
        ),
        (
            "totem.token",
            1.5.into(),
            "totem.token",
            ConfigErrorKind::InvalidValue,
        ),
        ("port", (-1).into(), "port", ConfigErrorKind::InvalidValue),
        (
            "port",
            65536i64.into(),
            "port",
            ConfigErrorKind::InvalidValue,
        ),
        (
            "bind",
            "nowhere".into(),
            "bind",
            ConfigErrorKind::InvalidValue,
        ),
        (
            "crypto",
            "rot13".into(),
            "crypto",
            ConfigErrorKind::InvalidValue,
        ),
        (
            "window_size",
            true.into(),
            "totem.window_size",
            ConfigErrorKind::InvalidValue,
        ),
        ("tokne", 1.into(), "tokne", ConfigErrorKind::UnknownKey),
        (
            "totem.bogus",
            1.into(),
            "totem.bogus",
            ConfigErrorKind::UnknownKey,
        ),
        // A flat alias does not reach into other tables.
        (
            "totem.port",
            1.into(),
            "totem.port",
            ConfigErrorKind::UnknownKey,
        ),
    ];
    for (key, value, named, kind) in cases {
        let e = b.set_value(key, value).unwrap_err();
        assert_eq!((e.key.as_str(), e.kind), (named, kind), "{key}: {e}");
        assert!(e.to_string().contains(&format!("'{named}'")), "{e}");
    }
    let e = b.set_value("tokne", 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown config key 'tokne'; did you mean 'totem.token'?"
    );

    // Range errors surface at build, still under the canonical key.
    b.set_value("bind", "10.1.2.3").unwrap();
    b.set_value("crypto", "none").unwrap();
    b.set_value("token", 5).unwrap();
    let e = b.build().unwrap_err();
    assert_eq!(e.key, "totem.token");
    assert_eq!(
        e.to_string(),
        "invalid config key 'totem.token': 5ms is below the minimum of 30ms"
    );
}

#[test]
fn set_from_str_parses_text_per_key() {
    let mut b = NodeConfig::builder();
    for (k, v) in [
        ("cluster_name", "[prod]"),
        ("bind", "10.0.0.2"),
        ("crypto", "none"),
        ("transport", "UDPU"),
        ("members", "1=10.0.0.1, 2=10.0.0.2, 3=10.0.0.3:5406"),
        ("token", "2s"),
        ("totem", "{ join = 70 }"),
        ("cancel_token_hold_on_retransmit", "off"),
    ] {
        b.set_from_str(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    let c = b.build().unwrap();
    assert_eq!(c.cluster_name(), "[prod]", "plain text, not TOML");
    assert_eq!(c.node_id(), 2);
    assert_eq!(c.members()[2].address, sa("10.0.0.3:5406"));
    assert_eq!(c.totem().token, ms(2000));
    assert_eq!(c.totem().join, ms(70));

    b.set_from_str(
        "members",
        r#"[{ node_id = 1, address = "10.0.0.1" }, { node_id = 2, address = "10.0.0.2" }]"#,
    )
    .unwrap();
    assert_eq!(b.build().unwrap().members().len(), 2);

    let e = b.set_from_str("members", "1@10.0.0.1").unwrap_err();
    assert_eq!(e.key, "members[0]");
    let e = b.set_from_str("members", "[{ node_id = 1,").unwrap_err();
    assert_eq!(e.key, "members");
    let e = b.set_from_str("totem", "token = 5").unwrap_err();
    assert_eq!(e.key, "totem");
    let e = b.set_from_str("miss_count_const", "many").unwrap_err();
    assert_eq!(e.key, "totem.miss_count_const");
}

#[test]
fn overrides_after_a_file_drop_the_file_location() {
    let text = "bind = \"10.1.2.3\"\ncrypto = \"none\"\n[totem]\ntoken = 5\n";
    let e = NodeConfig::from_toml_str(text).unwrap_err();
    assert_eq!(e.location.map(|l| l.line), Some(4));

    let mut b = evs::config::NodeConfigBuilder::from_toml_str(text).unwrap();
    b.set_value("token", 1000).unwrap();
    assert_eq!(b.build().unwrap().totem().token, ms(1000));
    b.set_value("totem.token", 6).unwrap();
    let e = b.build().unwrap_err();
    assert_eq!(e.key, "totem.token");
    assert_eq!(e.location, None, "the bad value did not come from the file");

    let mut b = evs::config::NodeConfigBuilder::from_toml_str(text).unwrap();
    let mut totem = toml::Table::new();
    totem.insert("token".into(), Value::Integer(7));
    b.set_value("totem", totem).unwrap();
    assert_eq!(b.build().unwrap_err().location, None, "nor through a table");
}

#[test]
fn node_id_is_derived_from_the_bind_address() {
    assert_eq!(node_id_from_address(ip("10.1.2.3")), Some(0x0A01_0203));
    assert_eq!(node_id_from_address(ip("192.168.1.10")), Some(0xC0A8_010A));
    assert_eq!(node_id_from_address(ip("0.0.0.0")), None);
    assert_eq!(
        node_id_from_address(ip("fd00::1:8000:0001")),
        Some(1),
        "31 bits"
    );
    assert_eq!(node_id_from_address(ip("fd00::8000:0")), None);

    let c = NodeConfig::builder()
        .bind(ip("10.1.2.3"))
        .crypto(Cipher::None)
        .build()
        .unwrap();
    assert_eq!(c.node_id(), 0x0A01_0203);

    let e = NodeConfig::builder()
        .bind(ip("fd00::8000:0"))
        .crypto(Cipher::None)
        .build()
        .unwrap_err();
    assert_eq!(e.key, "node_id");
    let c = NodeConfig::builder()
        .bind(ip("fd00::8000:0"))
        .node_id(9)
        .crypto(Cipher::None)
        .build()
        .unwrap();
    assert_eq!(c.node_id(), 9);
}

#[test]
fn udpu_finds_the_local_node_by_address_and_port() {
    // Three nodes on one host, told apart by port.
    let mut b = NodeConfig::builder();
    b.bind(ip("127.0.0.1"))
        .port(5407)
        .transport(Transport::Udpu)
        .crypto(Cipher::None);
    for (id, port) in [(1, 5406), (2, 5407), (3, 5408)] {
        b.add_member((id, SocketAddr::new(ip("127.0.0.1"), port)));
    }
    let c = b.build().unwrap();
    assert_eq!(c.node_id(), 2);
    assert_eq!(c.bind_addr(), sa("127.0.0.1:5407"));

    // An explicit node id must be the entry at bind:port.
    let e = b.clone().node_id(3).build().unwrap_err();
    assert_eq!(e.key, "node_id");
    assert!(e.message.contains("127.0.0.1:5408"), "{e}");
    assert_eq!(b.clone().node_id(2).build().unwrap(), c);
}

#[test]
fn interface_resolves_to_its_address() {
    let c = NodeConfig::builder()
        .interface("lo")
        .crypto(Cipher::None)
        .build()
        .unwrap();
    assert_eq!(c.bind(), ip("127.0.0.1"), "IPv4 first");
    assert_eq!(c.interface(), Some("lo"));
    assert_eq!(c.node_id(), 0x7F00_0001);

    match NodeConfig::builder()
        .interface("lo")
        .ip_version(IpVersion::V6)
        .crypto(Cipher::None)
        .node_id(1)
        .build()
    {
        Ok(c) => assert_eq!(c.bind(), ip("::1")),
        // Hosts without IPv6 on loopback.
        Err(e) => assert_eq!(e.key, "interface", "{e}"),
    }
}

#[test]
fn every_key_is_accepted_by_set_value() {
    // The published key list is what Python documents; each must be settable by name.
    assert!(KEYS.contains(&"totem.token") && KEYS.contains(&"members"));
    for key in KEYS {
        let flat = key.strip_prefix("totem.").unwrap_or(key);
        let mut b = NodeConfig::builder();
        let value: Value = match flat {
            "cluster_name" | "interface" | "authkey" => "x".into(),
            "bind" | "multicast_address" => "239.1.2.3".into(),
            "transport" => "udpu".into(),
            "crypto" => "none".into(),
            "members" => Value::Array(vec![]),
            "ip_version" => 4.into(),
            "cancel_token_hold_on_retransmit" => true.into(),
            _ => 100.into(),
        };
        b.set_value(flat, value.clone())
            .unwrap_or_else(|e| panic!("{flat}: {e}"));
        b.set_value(key, value)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}
