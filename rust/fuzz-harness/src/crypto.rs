//! Targets `crypto_open` and `crypto_tamper`: the frame [`Opener`], which sees every datagram
//! before anything else does.
//!
//! Both use one fixed test key and cluster name, so frames sealed for the seed corpus stay
//! valid inputs. (The [`Sealer`] still draws its random boot salt; no check depends on it.)

use std::collections::{BTreeSet, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use evs::crypto::{AuthKey, Cipher, Opener, Reject, Sealer, HEADER_LEN};

/// The authkey of every fuzz run (any 32 bytes will do; this one is public).
pub const TEST_KEY: [u8; 32] = *b"evs-rs fuzz key, not a secret!!!";
/// The cluster name of every fuzz run.
pub const CLUSTER: &str = "fuzz";

pub fn test_key() -> AuthKey {
    AuthKey::from_bytes(&TEST_KEY).expect("32 bytes is a valid authkey length")
}

/// The Opener for `cipher`: with a key for the AEADs, without one for `none`.
pub fn opener(cipher: Cipher) -> Opener {
    match cipher {
        Cipher::None => Opener::without_crypto(),
        _ => Opener::new(&test_key(), cipher, CLUSTER),
    }
}

/// Splits `data` into frames written as `[len u16 LE][frame]`; a short last frame is cut.
pub fn split_frames(data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut rest = data;
    while let [lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        frames.push(frame.to_vec());
        rest = next;
    }
    frames
}

/// The inverse of [`split_frames`], for building seeds.
pub fn join_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let len = u16::try_from(f.len()).expect("frame under 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The cipher a selector byte names: 0 AES-256-GCM, 1 ChaCha20-Poly1305, 2 none.
pub fn cipher_of(selector: u8) -> Cipher {
    Cipher::ALL[usize::from(selector) % Cipher::ALL.len()]
}

/// A model of the documented replay rules, written from the module doc rather than from the
/// code: per sender, its newest start `(boot, boot_salt)`, the highest counter and the
/// accepted counters of that start.
#[derive(Default)]
struct ReplayModel {
    senders: HashMap<u32, (u64, u64, u64, BTreeSet<u64>)>,
}

impl ReplayModel {
    /// The verdict on an authentic frame, and the state change it makes.
    fn authentic(&mut self, sender: u32, boot: u64, salt: u64, counter: u64) -> Result<(), Reject> {
        match self.senders.get_mut(&sender) {
            Some((b, s, top, seen)) if *b == boot && *s == salt => {
                let fresh = counter > *top
                    || (*top - counter < evs::crypto::REPLAY_WINDOW && !seen.contains(&counter));
                if !fresh {
                    return Err(Reject::Replayed);
                }
                *top = (*top).max(counter);
                seen.insert(counter);
                Ok(())
            }
            Some((b, _, _, _)) if boot <= *b => Err(Reject::StaleBoot),
            _ => {
                self.senders
                    .insert(sender, (boot, salt, counter, BTreeSet::from([counter])));
                Ok(())
            }
        }
    }
}

/// Target `crypto_open`: the first byte picks the cipher, the rest is a sequence of frames
/// ([`split_frames`]) opened one after another by one Opener.
///
/// Checked: the verdict on the header matches the documented order of checks; an accepted
/// frame reports its header fields and the right payload length; every verdict on an authentic
/// frame (all of them with `none`; with an AEAD, those that pass the tag, which only seeds
/// sealed with [`TEST_KEY`] can) matches [`ReplayModel`]; the counters add up.
pub fn open_raw(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let cipher = cipher_of(selector);
    let mut opener = opener(cipher);
    let mut model = ReplayModel::default();
    let frames = split_frames(rest);
    for frame in &frames {
        let mut buf = frame.clone();
        let got = opener
            .open(&mut buf)
            .map(|o| (o.sender, o.boot, o.counter, o.payload.len()));

        // The header checks, in the documented order.
        let header = frame.first_chunk::<HEADER_LEN>();
        let expect_header = match header {
            None => Err(Reject::TooShort),
            Some(h) => {
                let sender = u32::from_le_bytes(h[2..6].try_into().unwrap());
                let counter = u64::from_le_bytes(h[22..30].try_into().unwrap());
                match Cipher::from_wire_id(h[1]) {
                    _ if h[0] != evs::crypto::VERSION => Err(Reject::BadHeader),
                    None => Err(Reject::BadHeader),
                    Some(c) if c != cipher => Err(Reject::CipherMismatch),
                    Some(_) if sender == 0 || counter == 0 => Err(Reject::BadHeader),
                    Some(c) if frame.len() < HEADER_LEN + c.tag_len() => Err(Reject::TooShort),
                    Some(_) => Ok(()),
                }
            }
        };
        if let Err(r) = expect_header {
            assert_eq!(got, Err(r), "header verdict of {frame:02x?}");
            continue;
        }
        if got == Err(Reject::Unauthenticated) {
            assert!(cipher.is_authenticated(), "`none` authenticated nothing");
            continue;
        }
        let h = header.expect("checked above");
        let sender = u32::from_le_bytes(h[2..6].try_into().unwrap());
        let boot = u64::from_le_bytes(h[6..14].try_into().unwrap());
        let salt = u64::from_le_bytes(h[14..22].try_into().unwrap());
        let counter = u64::from_le_bytes(h[22..30].try_into().unwrap());
        let want = model
            .authentic(sender, boot, salt, counter)
            .map(|()| (sender, boot, counter, frame.len() - cipher.overhead()));
        assert_eq!(got, want, "replay verdict of {frame:02x?}");
    }
    let stats = opener.stats();
    assert_eq!(
        stats.total() + opener.accepted(),
        frames.len() as u64,
        "every frame is counted once"
    );
}

/// One edit of a sealed frame.
#[derive(Arbitrary, Debug)]
enum Edit {
    /// XOR the byte at `at` (modulo the length) with `mask`.
    Flip {
        at: u16,
        mask: u8,
    },
    Set {
        at: u16,
        byte: u8,
    },
    Truncate {
        len: u16,
    },
    Append {
        bytes: Vec<u8>,
    },
    Insert {
        at: u16,
        byte: u8,
    },
    Remove {
        at: u16,
    },
    /// Replace the tail from `at` with the same bytes of another sealed frame.
    SpliceFrom {
        other: u8,
        at: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct TamperInput {
    cipher: bool,
    payloads: Vec<Vec<u8>>,
    target: u8,
    edits: Vec<Edit>,
}

/// Target `crypto_tamper`: seals fuzzer-chosen payloads with the test key, edits one frame,
/// and offers the edited frame to a fresh Opener before the genuine ones.
///
/// Checked: an edited frame that differs from every genuine frame is refused, whatever the
/// edit; one that equals a genuine frame (no net change, or spliced whole from another) is
/// accepted with that frame's payload; the refused forgery left no
/// trace, so every genuine frame is then accepted with its payload, and each is refused as
/// replayed the second time.
pub fn tamper(data: &[u8]) {
    let Ok(mut input) = TamperInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    input.payloads.truncate(8);
    input.edits.truncate(16);
    if input.payloads.is_empty() {
        input.payloads.push(Vec::new());
    }
    let cipher = if input.cipher {
        Cipher::ChaCha20Poly1305
    } else {
        Cipher::Aes256Gcm
    };
    let mut sealer = Sealer::new(&test_key(), cipher, CLUSTER, 3, 1).expect("sealer");
    let frames: Vec<Vec<u8>> = input
        .payloads
        .iter()
        .map(|p| {
            let mut f = Vec::new();
            sealer.seal(p, &mut f).expect("seal");
            f
        })
        .collect();
    let t = usize::from(input.target) % frames.len();
    let mut edited = frames[t].clone();
    for e in &input.edits {
        apply(&mut edited, e, &frames);
    }

    // Splicing can rebuild another genuine frame whole; that one must be accepted.
    let genuine = frames.iter().position(|f| *f == edited);
    let mut opener = opener(cipher);
    let mut buf = edited.clone();
    let verdict = opener.open(&mut buf).map(|o| o.payload.to_vec());
    match genuine {
        Some(j) => assert_eq!(verdict, Ok(input.payloads[j].clone()), "genuine frame {j}"),
        None => assert!(
            verdict.is_err(),
            "an edited frame was accepted: {:02x?} -> {:02x?}",
            frames[t],
            edited
        ),
    }
    for (i, (frame, payload)) in frames.iter().zip(&input.payloads).enumerate() {
        let mut buf = frame.clone();
        let got = opener.open(&mut buf).map(|o| o.payload.to_vec());
        if Some(i) == genuine {
            assert_eq!(got, Err(Reject::Replayed), "genuine frame {i} again");
        } else {
            assert_eq!(
                got.as_ref(),
                Ok(payload),
                "genuine frame {i} after a forgery"
            );
        }
    }
    for frame in &frames {
        let mut buf = frame.clone();
        assert_eq!(
            opener.open(&mut buf).map(|_| ()),
            Err(Reject::Replayed),
            "a genuine frame opened twice"
        );
    }
}

fn apply(frame: &mut Vec<u8>, edit: &Edit, frames: &[Vec<u8>]) {
    let n = frame.len();
    let at = |i: u16| usize::from(i) % n.max(1);
    match *edit {
        Edit::Flip { at: i, mask } if n > 0 => frame[at(i)] ^= mask,
        Edit::Set { at: i, byte } if n > 0 => frame[at(i)] = byte,
        Edit::Truncate { len } => frame.truncate(usize::from(len) % (n + 1)),
        Edit::Append { ref bytes } => frame.extend_from_slice(&bytes[..bytes.len().min(64)]),
        Edit::Insert { at: i, byte } => frame.insert(usize::from(i) % (n + 1), byte),
        Edit::Remove { at: i } if n > 0 => {
            frame.remove(at(i));
        }
        Edit::SpliceFrom { other, at: i } => {
            let src = &frames[usize::from(other) % frames.len()];
            let from = usize::from(i) % (n.min(src.len()) + 1);
            frame.truncate(from);
            frame.extend_from_slice(&src[from..]);
        }
        _ => {}
    }
}
