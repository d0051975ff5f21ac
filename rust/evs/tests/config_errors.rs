//! Every bad value and unknown key yields an error that names its key.

use evs::config::{ConfigErrorKind, NodeConfig};

/// Completes a fragment into a document: adds `bind` and `crypto = "none"` unless the fragment
/// deals with those keys itself, ahead of the fragment so that its `[totem]` header comes last.
fn doc(fragment: &str) -> String {
    let mut d = String::new();
    if !fragment.contains("bind") && !fragment.contains("interface") {
        d.push_str("bind = \"10.1.2.3\"\n");
    }
    if !fragment.contains("crypto") && !fragment.contains("authkey") {
        d.push_str("crypto = \"none\"\n");
    }
    d.push_str(fragment);
    d.push('\n');
    d
}

const UDPU: &str = "transport = \"udpu\"\n";

#[test]
fn bad_values_name_their_key() {
    let two = "members = [{ node_id = 1, address = \"10.1.2.3\" }, \
               { node_id = 2, address = \"10.1.2.4\" }]";
    let cases: Vec<(String, &str)> = vec![
        // top level
        ("cluster_name = \"\"".into(), "cluster_name"),
        ("cluster_name = 5".into(), "cluster_name"),
        ("cluster_name = \"a\\nb\"".into(), "cluster_name"),
        (
            format!("cluster_name = \"{}\"", "x".repeat(256)),
            "cluster_name",
        ),
        ("node_id = 0".into(), "node_id"),
        ("node_id = -1".into(), "node_id"),
        ("node_id = 4294967296".into(), "node_id"),
        ("node_id = 1.5".into(), "node_id"),
        ("bind = \"0.0.0.0\"".into(), "bind"),
        ("bind = \"::\"".into(), "bind"),
        ("bind = \"239.1.1.1\"".into(), "bind"),
        ("bind = \"255.255.255.255\"".into(), "bind"),
        ("bind = \"fe80::1\"".into(), "bind"),
        ("bind = \"node1.example\"".into(), "bind"),
        ("bind = 10".into(), "bind"),
        ("bind = \"10.0.0.1\"\ninterface = \"lo\"".into(), "bind"),
        ("interface = \"no-such-if0\"".into(), "interface"),
        ("interface = \"a/b\"".into(), "interface"),
        ("interface = \"\"".into(), "interface"),
        ("interface = \"much-too-long-name\"".into(), "interface"),
        ("ip_version = 5".into(), "ip_version"),
        ("ip_version = 6".into(), "ip_version"),
        ("port = 0".into(), "port"),
        ("port = 70000".into(), "port"),
        ("port = \"http\"".into(), "port"),
        ("transport = \"tcp\"".into(), "transport"),
        ("transport = true".into(), "transport"),
        (
            "multicast_address = \"10.0.0.1\"".into(),
            "multicast_address",
        ),
        (
            "multicast_address = \"ff15::1\"".into(),
            "multicast_address",
        ),
        ("multicast_address = \"group\"".into(), "multicast_address"),
        ("multicast_ttl = 256".into(), "multicast_ttl"),
        ("multicast_ttl = -1".into(), "multicast_ttl"),
        // members
        (
            "members = [{ node_id = 1, address = \"10.1.2.3\" }]".into(),
            "members",
        ),
        (UDPU.into(), "members"),
        (format!("{UDPU}members = []"), "members"),
        (format!("{UDPU}members = 5"), "members"),
        (
            format!("{UDPU}members = [{{ node_id = 2, address = \"10.1.2.4\" }}]"),
            "members",
        ),
        (format!("{UDPU}node_id = 7\n{two}"), "members"),
        (format!("{UDPU}node_id = 2\n{two}"), "node_id"),
        (
            format!(
                "{UDPU}members = [{{ node_id = 1, address = \"10.1.2.3\" }}, \
                 {{ node_id = 1, address = \"10.1.2.4\" }}]"
            ),
            "members[1].node_id",
        ),
        (
            format!(
                "{UDPU}members = [{{ node_id = 1, address = \"10.1.2.3\" }}, \
                 {{ node_id = 2, address = \"10.1.2.3:5405\" }}]"
            ),
            "members[1].address",
        ),
        (
            format!(
                "{UDPU}members = [{{ node_id = 1, address = \"10.1.2.3\" }}, \
                 {{ node_id = 2, address = \"fd00::2\" }}]"
            ),
            "members[1].address",
        ),
        (
            format!("{UDPU}members = [{{ node_id = 0, address = \"10.1.2.3\" }}]"),
            "members[0].node_id",
        ),
        (
            format!("{UDPU}members = [{{ node_id = 1, address = \"ten\" }}]"),
            "members[0].address",
        ),
        (
            format!("{UDPU}members = [{{ node_id = 1, address = \"10.1.2.3:0\" }}]"),
            "members[0].address",
        ),
        (
            format!("{UDPU}members = [{{ node_id = 1, address = \"0.0.0.0\" }}]"),
            "members[0].address",
        ),
        (
            format!("{UDPU}members = [{{ node_id = 1 }}]"),
            "members[0].address",
        ),
        (
            format!("{UDPU}members = [{{ address = \"10.1.2.3\" }}]"),
            "members[0].node_id",
        ),
        (format!("{UDPU}members = [1]"), "members[0]"),
        (format!("{UDPU}members = [\"10.1.2.3\"]"), "members[0]"),
        (
            format!("{UDPU}[[members]]\nnode_id = \"one\"\naddress = \"10.1.2.3\""),
            "members[0].node_id",
        ),
        (format!("{UDPU}multicast_ttl = 2\n{two}"), "multicast_ttl"),
        (
            format!("{UDPU}multicast_address = \"239.1.1.1\"\n{two}"),
            "multicast_address",
        ),
        // crypto
        ("crypto = \"rot13\"\nauthkey = \"/k\"".into(), "crypto"),
        ("crypto = \"aes256gcm\"".into(), "authkey"),
        ("crypto = \"chacha20poly1305\"".into(), "authkey"),
        ("crypto = \"none\"\nauthkey = \"/k\"".into(), "authkey"),
        ("authkey = \"\"".into(), "authkey"),
        ("authkey = 5".into(), "authkey"),
        // sizes
        ("max_message_size = 0".into(), "max_message_size"),
        ("max_message_size = 67108865".into(), "max_message_size"),
        ("max_message_size = \"1MB\"".into(), "max_message_size"),
        ("send_queue_bytes = 10".into(), "send_queue_bytes"),
        ("delivery_buffer_bytes = -1".into(), "delivery_buffer_bytes"),
        (
            "delivery_buffer_bytes = 1.5".into(),
            "delivery_buffer_bytes",
        ),
        (
            "delivery_buffer_bytes = \"lots\"".into(),
            "delivery_buffer_bytes",
        ),
        (
            "delivery_buffer_bytes = true".into(),
            "delivery_buffer_bytes",
        ),
        // totem
        ("totem = 5".into(), "totem"),
        ("[totem]\ntoken = 5".into(), "totem.token"),
        ("[totem]\ntoken = \"soon\"".into(), "totem.token"),
        ("[totem]\ntoken = \"3 min\"".into(), "totem.token"),
        ("[totem]\ntoken = 1.5".into(), "totem.token"),
        ("[totem]\ntoken = -1".into(), "totem.token"),
        ("[totem]\ntoken = 3600001".into(), "totem.token"),
        (
            "[totem]\ntoken_coefficient = \"2h\"".into(),
            "totem.token_coefficient",
        ),
        (
            "[totem]\ntoken_coefficient = 3600001".into(),
            "totem.token_coefficient",
        ),
        (
            "[totem]\ntoken_retransmits_before_loss_const = 0".into(),
            "totem.token_retransmits_before_loss_const",
        ),
        (
            "[totem]\ntoken_retransmit = 10000".into(),
            "totem.token_retransmit",
        ),
        (
            "[totem]\ntoken_retransmit = 10".into(),
            "totem.token_retransmit",
        ),
        ("[totem]\nhold = 5".into(), "totem.hold"),
        ("[totem]\nhold = 2000".into(), "totem.hold"),
        ("[totem]\ntoken_warning = 101".into(), "totem.token_warning"),
        ("[totem]\njoin = 0".into(), "totem.join"),
        ("[totem]\nsend_join = 5000".into(), "totem.send_join"),
        ("[totem]\nconsensus = 40".into(), "totem.consensus"),
        ("[totem]\nconsensus = 2000".into(), "totem.consensus"),
        ("[totem]\nmerge = 10".into(), "totem.merge"),
        ("[totem]\ndowncheck = 10".into(), "totem.downcheck"),
        (
            "[totem]\nfail_recv_const = 0".into(),
            "totem.fail_recv_const",
        ),
        (
            "[totem]\nseqno_unchanged_const = 0".into(),
            "totem.seqno_unchanged_const",
        ),
        (
            "[totem]\nmiss_count_const = 0".into(),
            "totem.miss_count_const",
        ),
        ("[totem]\nwindow_size = 0".into(), "totem.window_size"),
        ("[totem]\nmax_messages = 51".into(), "totem.max_messages"),
        (
            "[totem]\nheartbeat_failures_allowed = 4294967296".into(),
            "totem.heartbeat_failures_allowed",
        ),
        (
            "[totem]\nmax_network_delay = 10".into(),
            "totem.max_network_delay",
        ),
        (
            "[totem]\ncancel_token_hold_on_retransmit = \"maybe\"".into(),
            "totem.cancel_token_hold_on_retransmit",
        ),
        (
            "[totem]\nmax_packet_size = 100".into(),
            "totem.max_packet_size",
        ),
        (
            "[totem]\nmax_packet_size = 65001".into(),
            "totem.max_packet_size",
        ),
        (
            "[totem]\nretransmit_list_max = 0".into(),
            "totem.retransmit_list_max",
        ),
        (
            "[totem]\nretransmit_list_max = 100000".into(),
            "totem.retransmit_list_max",
        ),
        (
            "[totem]\nsort_queue_capacity = 10".into(),
            "totem.sort_queue_capacity",
        ),
        (
            "[totem]\ninitial_seq = \"18446744073709551615\"".into(),
            "totem.initial_seq",
        ),
        (
            "[totem]\ninitial_seq = \"99999999999999999999\"".into(),
            "totem.initial_seq",
        ),
    ];
    for (fragment, key) in &cases {
        let text = doc(fragment);
        let e = match NodeConfig::from_toml_str(&text) {
            Ok(c) => panic!("accepted:\n{text}\n{c:?}"),
            Err(e) => e,
        };
        assert_eq!(e.kind, ConfigErrorKind::InvalidValue, "{text}\n{e}");
        assert_eq!(e.key, *key, "{text}\n{e}");
        let shown = e.to_string();
        assert!(
            shown.contains(&format!("invalid config key '{key}': ")),
            "{shown}"
        );
        assert!(!e.message.is_empty());
        // When the key is written in the text, the error points at that line.
        let field = key.rsplit('.').next().unwrap().split('[').next().unwrap();
        if let Some(l) = e.location {
            let line = text.lines().nth(l.line - 1).unwrap();
            // A missing member field is shown at its entry.
            let entry = key.starts_with("members[") && line.contains("members");
            assert!(line.contains(field) || entry, "{shown} -> {line:?}");
        } else {
            assert!(
                !text.lines().any(|l| l.trim_start().starts_with(field)),
                "no location for a key in the text: {shown}\n{text}"
            );
        }
    }
}

#[test]
fn unknown_keys_name_the_key_and_suggest() {
    let cases = [
        ("totme = 1", "totme", Some("did you mean 'totem'?")),
        ("[totme]\ntoken = 1", "totme", Some("did you mean 'totem'?")),
        ("prot = 1", "prot", Some("did you mean 'port'?")),
        ("clustername = \"x\"", "clustername", Some("'cluster_name'")),
        (
            "[totem]\ntokn = 1",
            "totem.tokn",
            Some("did you mean 'totem.token'?"),
        ),
        (
            "[totem]\nwindowsize = 1",
            "totem.windowsize",
            Some("did you mean 'totem.window_size'?"),
        ),
        // Right name, wrong place.
        ("token = 3000", "token", Some("did you mean 'totem.token'?")),
        (
            "[totem]\nmax_message_size = 5",
            "totem.max_message_size",
            Some("did you mean 'max_message_size'?"),
        ),
        (
            "[totem]\nport = 5",
            "totem.port",
            Some("did you mean 'port'?"),
        ),
        // Corosync spellings.
        (
            "mcastaddr = \"239.1.1.1\"",
            "mcastaddr",
            Some("multicast_address"),
        ),
        (
            "[totem]\nnetmtu = 1500",
            "totem.netmtu",
            Some("totem.max_packet_size"),
        ),
        ("secauth = \"on\"", "secauth", Some("'crypto'")),
        ("nodeid = 1", "nodeid", Some("'node_id'")),
        // Nothing close.
        ("zzzzzzzz = 1", "zzzzzzzz", None),
        ("[totem]\nqqqqqqqq = 1", "totem.qqqqqqqq", None),
        (
            "transport = \"udpu\"\nmembers = [{ node_id = 1, adress = \"10.1.2.3\" }]",
            "members[0].adress",
            Some("did you mean 'members[0].address'?"),
        ),
    ];
    for (fragment, key, hint) in cases {
        let text = doc(fragment);
        let e = NodeConfig::from_toml_str(&text).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownKey, "{text}\n{e}");
        assert_eq!(e.key, key, "{e}");
        let shown = e.to_string();
        assert!(
            shown.contains(&format!("unknown config key '{key}'")),
            "{shown}"
        );
        match hint {
            Some(h) => assert!(shown.contains(h), "{shown} lacks {h}"),
            None => assert!(e.message.is_empty(), "{shown}"),
        }
        let l = e.location.expect("unknown keys in a text have a location");
        let last = key.rsplit(['.', ']']).next().unwrap();
        assert!(
            text.lines().nth(l.line - 1).unwrap().contains(last),
            "{shown}"
        );
    }
}

#[test]
fn unknown_key_display_is_exact() {
    let e = NodeConfig::from_toml_str("bind = \"10.1.2.3\"\ntotme = 1\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column 1: unknown config key 'totme'; did you mean 'totem'?"
    );
}

#[test]
fn crypto_none_must_be_explicit() {
    let e = NodeConfig::from_toml_str("bind = \"10.1.2.3\"\n").unwrap_err();
    assert_eq!(e.key, "authkey");
    assert!(e.message.contains("crypto = \"none\""), "{e}");
    let c = NodeConfig::from_toml_str("bind = \"10.1.2.3\"\ncrypto = \"none\"\n").unwrap();
    assert_eq!(c.crypto(), evs::crypto::Cipher::None);
    let c = NodeConfig::from_toml_str("bind = \"10.1.2.3\"\nauthkey = \"/k\"\n").unwrap();
    assert_eq!(
        c.crypto(),
        evs::crypto::Cipher::Aes256Gcm,
        "the default cipher"
    );
}

#[test]
fn udpu_without_members_is_an_error() {
    let e = NodeConfig::from_toml_str(&doc(UDPU)).unwrap_err();
    assert_eq!(e.key, "members");
    assert!(e.message.contains("udpu"), "{e}");
    assert_eq!(e.location, None, "members is not in the text");
}

#[test]
fn bind_and_interface_conflict_names_both() {
    let e = NodeConfig::from_toml_str(&doc("bind = \"10.0.0.1\"\ninterface = \"lo\"")).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("'bind'") && shown.contains("'interface'"),
        "{shown}"
    );
    let e = NodeConfig::from_toml_str("crypto = \"none\"\n").unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("'bind'") && shown.contains("'interface'"),
        "{shown}"
    );
}

#[test]
fn delivery_buffer_errors_say_what_is_expected() {
    for (value, message) in [
        (
            "\"lots\"",
            "expected \"auto\" or a number of bytes (0: no buffer), got the string \"lots\"",
        ),
        (
            "1.5",
            "expected \"auto\" or a number of bytes (0: no buffer), got the float 1.5",
        ),
        ("-1", "must not be negative, got -1"),
    ] {
        let e = NodeConfig::from_toml_str(&doc(&format!("delivery_buffer_bytes = {value}")))
            .unwrap_err();
        assert_eq!(e.key, "delivery_buffer_bytes");
        assert!(e.to_string().contains(message), "{value}: {e}");
    }
}
