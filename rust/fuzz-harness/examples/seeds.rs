//! Writes seed inputs for the fuzz targets: `cargo run -p fuzz-harness --example seeds -- DIR`
//! fills `DIR/<target>/` with packets of an honest ring run, ring payloads of the `evs` node,
//! and frames sealed with the test key. The fuzzer starts from them; `cargo fuzz cmin` keeps
//! those that still add coverage in `fuzz/corpus/`.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use evs::crypto::{Cipher, Sealer};
use evs::groups;
use fuzz_harness::crypto::{join_frames, test_key, CLUSTER};
use totem::wire::{self, Packet};

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create seed directory");
    fs::write(d.join(name), data).expect("write seed");
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seeds DIR");
    let dir = Path::new(&dir);
    let packets = fuzz_harness::ring::capture_packets();

    // wire_decode: one of each packet type and size class, the payloads inside the multicasts,
    // and ring payloads of every kind.
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in packets.iter().enumerate() {
        let d = wire::decode(p).expect("honest packets decode");
        let class = (d.packet.packet_type() as u8, p.len() / 256);
        if seen.insert(class) {
            write(dir, "wire_decode", &format!("packet-{i}"), p);
        }
        if let Packet::Mcast(m) = d.packet {
            if i % 7 == 0 {
                write(dir, "wire_decode", &format!("payload-{i}"), &m.payload);
            }
        }
    }
    let g = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let groups_list = [g("locks"), g("audit")];
    write(
        dir,
        "wire_decode",
        "app",
        &groups::encode_app(7, &groups_list, b"hello"),
    );
    write(
        dir,
        "wire_decode",
        "join",
        &groups::encode_membership(true, 7, &groups_list),
    );
    write(
        dir,
        "wire_decode",
        "leave",
        &groups::encode_membership(false, 7, &groups_list),
    );
    let entries = vec![(1, groups_list.to_vec()), (2, vec![g("x")])];
    for (i, part) in groups::encode_sync(&entries, 24).iter().enumerate() {
        write(dir, "wire_decode", &format!("sync-{i}"), part);
    }

    // crypto_open: for each cipher, a run of sealed packets with a replay and a reordering.
    for (c, cipher) in Cipher::ALL.into_iter().enumerate() {
        let mut sealer = Sealer::new(&test_key(), cipher, CLUSTER, 2, 10).expect("sealer");
        let frames: Vec<Vec<u8>> = packets
            .iter()
            .take(6)
            .map(|p| {
                let mut f = Vec::new();
                sealer.seal(p, &mut f).expect("seal");
                f
            })
            .collect();
        let order = [0usize, 2, 1, 1, 5, 3, 0, 4];
        let mut seed = vec![c as u8];
        seed.extend(join_frames(order.iter().map(|&i| frames[i].as_slice())));
        write(
            dir,
            "crypto_open",
            &format!("sealed-{}", cipher.as_str()),
            &seed,
        );
    }

    // crypto_tamper and ring take structured input; a few short byte strings start them.
    for (i, s) in [
        &b"\x00\x01\x02\x03\x04\x05\x06\x07"[..],
        &[0xff; 16],
        b"evs",
    ]
    .iter()
    .enumerate()
    {
        write(dir, "crypto_tamper", &format!("bytes-{i}"), s);
        write(dir, "ring", &format!("bytes-{i}"), s);
    }
}
