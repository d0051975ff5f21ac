//! Packet security: authenticated encryption, key handling and replay protection.
//!
//! Every datagram the node sends goes through a [`Sealer`] and every datagram it
//! receives through an [`Opener`]. Only frames that the `Opener` accepts are
//! handed to the protocol decoder, so the decoder never sees bytes from anyone
//! who does not hold the cluster's authkey ("authenticate before parsing"; most
//! Corosync CVEs were parsing bugs reachable by unauthenticated packets).
//!
//! # Keys
//!
//! All nodes share one *authkey* file (32..=4096 random bytes, mode 0600, made by
//! [`keygen`], read by [`load_authkey`]). It is never used directly as a cipher
//! key. HKDF-SHA256 first extracts a cluster key with the salt
//! `"evs-rs/v1" || cluster_name` (so two clusters that share a key file still
//! cannot read each other), then expands one 32-byte AEAD key per sender start
//! with the info `"packet" || sender (u32 LE) || boot (u64 LE) || boot_salt
//! (u64 LE) || cipher id (u8)`. All fields are fixed length, so the encoding is
//! unambiguous, and the cipher id keeps one key from ever being used with two
//! algorithms.
//!
//! # Frame
//!
//! ```text
//! offset  size  field
//!      0     1  version     (= 1)
//!      1     1  cipher      (0 none, 1 aes256gcm, 2 chacha20poly1305)
//!      2     4  sender      u32 LE, never 0
//!      6     8  boot        u64 LE, strictly increases across restarts of a sender
//!     14     8  boot_salt   u64 LE, random per Sealer
//!     22     8  counter     u64 LE, 1, 2, 3, ... per Sealer, never wraps
//!     30     n  ciphertext  (plaintext when the cipher is `none`)
//!   30+n    16  AEAD tag    (absent when the cipher is `none`)
//! ```
//!
//! The 30-byte header is the AEAD's associated data: readable by anyone,
//! modifiable by no one. The nonce is `counter (u64 LE) || 0u32`.
//!
//! # Nonce uniqueness
//!
//! A (key, nonce) pair must never repeat: with AES-GCM a single repeat leaks the
//! authentication subkey and lets an eavesdropper forge packets. The key is
//! unique per `(sender, boot, boot_salt)` and the counter never repeats within
//! one [`Sealer`], so:
//!
//! * within one process start the counter guarantees uniqueness, and [`Sealer::seal`]
//!   fails rather than wrap;
//! * across restarts the caller's strictly increasing `boot` gives a new key, and
//!   so does the random 64-bit `boot_salt` — **this salt is an addition to the
//!   original design**: without it nonce uniqueness rested entirely on the boot
//!   contract, and a violation (clock stepped back together with a lost or
//!   restored state file, e.g. a VM snapshot restore) would silently reuse GCM
//!   nonces. With the salt such a violation can only cost availability (peers
//!   refuse the restarted node as [`Reject::StaleBoot`] until its boot moves on),
//!   never confidentiality or integrity. Cost: 8 header bytes per packet.
//!
//! # Replay protection
//!
//! After a frame authenticates, the [`Opener`] checks it against per-sender
//! state: the newest `(boot, boot_salt)` seen for that sender and a sliding window
//! of the last [`REPLAY_WINDOW`] counters. A frame of an older boot (or of the
//! same boot with another salt) is [`Reject::StaleBoot`]; a newer boot replaces
//! the state; a counter already seen or older than the window is
//! [`Reject::Replayed`]. State changes only after authentication, so a forger
//! cannot advance a window, switch a sender to a bogus boot or evict a key.
//!
//! # What this does not protect against
//!
//! * **Insiders.** The key is shared: any holder can impersonate any node id
//!   (as in Corosync). Node ids are not bound to per-node keys, and there is no
//!   forward secrecy or rekeying; rotate the authkey by restarting the cluster.
//! * **Receiver restarts.** Replay state lives in memory. After the *receiving*
//!   process restarts, frames captured from a sender's current boot can be
//!   replayed once each (the window starts empty), and frames of a sender's older
//!   boot are accepted until a frame of its current boot has been seen. The same
//!   holds for a node's own earlier frames reflected back to it. The totem
//!   layer's ring-id and sequence filters remain the backstop; the runtime should
//!   drop frames carrying its own node id.
//! * **Availability and traffic analysis.** Flooding still costs CPU (at most one
//!   HKDF expansion plus one AEAD pass per forged frame, no amplification);
//!   packet sizes, timing and the cleartext header (sender, boot, counter) are
//!   visible.
//! * **Memory hygiene.** [`AuthKey`] zeroes its bytes on drop, but `ring` does not
//!   zero its expanded key schedules or the HKDF PRK.
//! * **`none`.** With [`Cipher::None`] *nothing* is authenticated: anyone on the
//!   network can read and forge frames, choose any sender, boot and counter, and
//!   so also poison the replay state. The replay window then only filters
//!   accidental duplicates. Use it only on a trusted network, and only when asked
//!   for explicitly (it is never the default).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// Wire format version carried in the first header byte.
pub const VERSION: u8 = 1;

/// Length of the cleartext, authenticated frame header.
pub const HEADER_LEN: usize = 30;

/// Length of the AEAD authentication tag (both supported AEADs use 16 bytes).
pub const TAG_LEN: usize = 16;

/// Bytes a sealed frame adds to its payload with an AEAD cipher
/// (header + tag). With [`Cipher::None`] the overhead is [`HEADER_LEN`];
/// see [`Cipher::overhead`].
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Number of most recent counters per sender that the replay window remembers.
/// Frames reordered by more than this are refused as [`Reject::Replayed`].
pub const REPLAY_WINDOW: u64 = 1024;

/// Smallest accepted authkey, in bytes (256 bits of key material).
pub const MIN_KEY_LEN: usize = 32;

/// Largest accepted authkey, in bytes (same limit as Corosync/knet).
pub const MAX_KEY_LEN: usize = 4096;

/// Authkey length [`keygen`] writes.
pub const DEFAULT_KEY_LEN: usize = 64;

// Header field offsets (see the module documentation).
const OFF_VERSION: usize = 0;
const OFF_CIPHER: usize = 1;
const OFF_SENDER: usize = 2;
const OFF_BOOT: usize = 6;
const OFF_SALT: usize = 14;
const OFF_COUNTER: usize = 22;

/// HKDF-Extract salt prefix; the cluster name follows it. Versioned so a future
/// format change also changes every key.
const KDF_SALT_PREFIX: &[u8] = b"evs-rs/v1";
/// HKDF-Expand info prefix for per-sender packet keys.
const KDF_INFO_PACKET: &[u8] = b"packet";
/// Length of every derived AEAD key (both AEADs take 256-bit keys).
const DERIVED_KEY_LEN: usize = 32;

// ---------------------------------------------------------------------------
// Cipher
// ---------------------------------------------------------------------------

/// Packet protection algorithm. The default is [`Cipher::Aes256Gcm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cipher {
    /// AES-256-GCM: fastest on CPUs with AES-NI / ARMv8 crypto extensions.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305: constant-time and fast in software, for CPUs without AES instructions.
    ChaCha20Poly1305,
    /// No encryption and no authentication. Only for trusted networks, and only
    /// when configured explicitly; see the module documentation.
    None,
}

impl Cipher {
    /// All ciphers, the default first.
    pub const ALL: [Cipher; 3] = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305, Cipher::None];

    /// Configuration name (`"aes256gcm"`, `"chacha20poly1305"`, `"none"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes256gcm",
            Cipher::ChaCha20Poly1305 => "chacha20poly1305",
            Cipher::None => "none",
        }
    }

    /// The byte identifying this cipher in the frame header and in key derivation.
    pub const fn wire_id(self) -> u8 {
        match self {
            Cipher::None => 0,
            Cipher::Aes256Gcm => 1,
            Cipher::ChaCha20Poly1305 => 2,
        }
    }

    /// The cipher with the given header byte, if any.
    pub const fn from_wire_id(id: u8) -> Option<Cipher> {
        match id {
            0 => Some(Cipher::None),
            1 => Some(Cipher::Aes256Gcm),
            2 => Some(Cipher::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Length of the authentication tag appended to each frame (0 for `None`).
    pub const fn tag_len(self) -> usize {
        match self {
            Cipher::None => 0,
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => TAG_LEN,
        }
    }

    /// Bytes a sealed frame adds to its payload with this cipher.
    pub const fn overhead(self) -> usize {
        HEADER_LEN + self.tag_len()
    }

    /// Whether frames are authenticated (and encrypted) at all.
    pub const fn is_authenticated(self) -> bool {
        !matches!(self, Cipher::None)
    }

    fn algorithm(self) -> Option<&'static aead::Algorithm> {
        match self {
            Cipher::Aes256Gcm => Some(&aead::AES_256_GCM),
            Cipher::ChaCha20Poly1305 => Some(&aead::CHACHA20_POLY1305),
            Cipher::None => None,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error from parsing an unknown cipher name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCipherError {
    name: String,
}

impl fmt::Display for ParseCipherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown cipher {:?}; expected one of \"aes256gcm\", \"chacha20poly1305\", \"none\"",
            self.name
        )
    }
}

impl std::error::Error for ParseCipherError {}

impl FromStr for Cipher {
    type Err = ParseCipherError;

    /// Parses a configuration name, ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Cipher::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseCipherError { name: s.to_owned() })
    }
}

// ---------------------------------------------------------------------------
// Authkey
// ---------------------------------------------------------------------------

/// Errors from generating, loading or constructing an authkey. Every message
/// names the file and says how to fix the problem.
#[derive(Debug)]
pub enum KeyError {
    /// The key file does not exist.
    NotFound {
        /// The key file.
        path: PathBuf,
    },
    /// The process may not read (or, for keygen, create) the key file.
    PermissionDenied {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is accessible to group or others.
    TooPermissive {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The path is not a regular file (a directory, a FIFO, a device ...).
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },
    /// The key file holds fewer than [`MIN_KEY_LEN`] bytes.
    TooShort {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The key file holds more than [`MAX_KEY_LEN`] bytes.
    TooLong {
        /// The key file.
        path: PathBuf,
    },
    /// A key length outside `MIN_KEY_LEN..=MAX_KEY_LEN` was requested or supplied.
    InvalidLength {
        /// The rejected length.
        len: usize,
    },
    /// [`keygen_with`] was asked not to overwrite, and the file exists.
    AlreadyExists {
        /// The existing key file.
        path: PathBuf,
    },
    /// The operating system's random number generator failed.
    Random,
    /// Any other I/O error.
    Io {
        /// The file involved.
        path: PathBuf,
        /// What was being done ("reading authkey file", ...).
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotFound { path } => write!(
                f,
                "authkey file {} does not exist; generate one with keygen on one node \
                 and copy it (mode 0600) to every node of the cluster",
                path.display()
            ),
            KeyError::PermissionDenied { path } => write!(
                f,
                "permission denied accessing authkey file {}; run as the user that owns \
                 the key (or fix its ownership / the directory permissions)",
                path.display()
            ),
            KeyError::TooPermissive { path, mode } => write!(
                f,
                "authkey file {} has mode {:04o}, which gives group/others access to the \
                 cluster secret; refusing to use it. Fix with: chmod 600 {} (and consider \
                 the key compromised if others could read it)",
                path.display(),
                mode,
                path.display()
            ),
            KeyError::NotAFile { path } => {
                write!(f, "authkey path {} is not a regular file", path.display())
            }
            KeyError::TooShort { path, len } => write!(
                f,
                "authkey file {} holds {} bytes, but at least {} are required; \
                 generate a new key with keygen",
                path.display(),
                len,
                MIN_KEY_LEN
            ),
            KeyError::TooLong { path } => write!(
                f,
                "authkey file {} is longer than the maximum of {} bytes; is it the right file?",
                path.display(),
                MAX_KEY_LEN
            ),
            KeyError::InvalidLength { len } => write!(
                f,
                "authkey length {} is outside the allowed range {}..={} bytes",
                len, MIN_KEY_LEN, MAX_KEY_LEN
            ),
            KeyError::AlreadyExists { path } => write!(
                f,
                "authkey file {} already exists; refusing to overwrite it (replacing the key \
                 cuts this node off from the cluster). Use the force option to replace it",
                path.display()
            ),
            KeyError::Random => f.write_str("the system random number generator failed"),
            KeyError::Io {
                path,
                action,
                source,
            } => write!(f, "error {} {}: {}", action, path.display(), source),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl KeyError {
    /// Maps an I/O error to the specific variant when there is one, so users
    /// get "does not exist" / "permission denied" instead of a raw errno.
    fn from_io(path: &Path, action: &'static str, e: io::Error) -> KeyError {
        let path = path.to_path_buf();
        match e.kind() {
            io::ErrorKind::NotFound => KeyError::NotFound { path },
            io::ErrorKind::PermissionDenied => KeyError::PermissionDenied { path },
            _ => KeyError::Io {
                path,
                action,
                source: e,
            },
        }
    }
}

/// The shared cluster secret. Zeroed on drop; its `Debug` shows only the length.
///
/// Deliberately not `Clone`: every copy would be another secret to wipe.
pub struct AuthKey {
    // Invariant: MIN_KEY_LEN <= bytes.len() <= MAX_KEY_LEN, and the spare
    // capacity never held key bytes (see `load_authkey`).
    bytes: Vec<u8>,
}

impl AuthKey {
    /// Builds a key from raw bytes (copied). Fails unless
    /// `MIN_KEY_LEN <= bytes.len() <= MAX_KEY_LEN`. The caller remains
    /// responsible for wiping its own copy.
    pub fn from_bytes(bytes: &[u8]) -> Result<AuthKey, KeyError> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&bytes.len()) {
            return Err(KeyError::InvalidLength { len: bytes.len() });
        }
        Ok(AuthKey {
            bytes: bytes.to_vec(),
        })
    }

    /// Generates a fresh random key of `len` bytes.
    pub fn generate(len: usize) -> Result<AuthKey, KeyError> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&len) {
            return Err(KeyError::InvalidLength { len });
        }
        let mut key = AuthKey {
            bytes: vec![0; len],
        };
        SystemRandom::new()
            .fill(&mut key.bytes)
            .map_err(|_| KeyError::Random)?;
        Ok(key)
    }

    /// Key length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false (a key has at least [`MIN_KEY_LEN`] bytes); present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// HKDF-Extract of this key for one cluster. Everything else derives from the
    /// PRK, so the raw key is needed only here.
    fn cluster_prk(&self, cluster_name: &str) -> hkdf::Prk {
        let mut salt = Vec::with_capacity(KDF_SALT_PREFIX.len() + cluster_name.len());
        salt.extend_from_slice(KDF_SALT_PREFIX);
        salt.extend_from_slice(cluster_name.as_bytes());
        hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&self.bytes)
    }
}

impl Drop for AuthKey {
    fn drop(&mut self) {
        // Plain writes followed by black_box so the compiler cannot prove the
        // buffer dead and drop the stores; best effort, without `unsafe`.
        for b in self.bytes.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&mut self.bytes);
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKey")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Reads and validates an authkey file.
///
/// Refused, each with an error naming the file and the fix: a missing file,
/// a file we may not read, a non-regular file, any group/other permission bit
/// (`mode & 0o077 != 0`), fewer than [`MIN_KEY_LEN`] or more than
/// [`MAX_KEY_LEN`] bytes. The mode is checked on the opened descriptor, so the
/// file cannot be swapped between check and read.
pub fn load_authkey(path: impl AsRef<Path>) -> Result<AuthKey, KeyError> {
    let path = path.as_ref();
    let mut file =
        File::open(path).map_err(|e| KeyError::from_io(path, "opening authkey file", e))?;
    let meta = file
        .metadata()
        .map_err(|e| KeyError::from_io(path, "inspecting authkey file", e))?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooPermissive {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Read into a buffer that is already an AuthKey, so it is wiped even on the
    // error paths. A fixed buffer (not read_to_end) because read_to_end may grow
    // the Vec (leaving unwiped copies in freed memory) and probe through a stack
    // buffer. One spare byte detects oversized files without reading them whole.
    let mut key = AuthKey {
        bytes: vec![0; MAX_KEY_LEN + 1],
    };
    let mut filled = 0;
    while filled < key.bytes.len() {
        match file.read(&mut key.bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(KeyError::from_io(path, "reading authkey file", e)),
        }
    }
    if filled > MAX_KEY_LEN {
        return Err(KeyError::TooLong {
            path: path.to_path_buf(),
        });
    }
    if filled < MIN_KEY_LEN {
        return Err(KeyError::TooShort {
            path: path.to_path_buf(),
            len: filled,
        });
    }
    // truncate keeps the allocation: the tail is still zeros, nothing is copied.
    key.bytes.truncate(filled);
    Ok(key)
}

/// Writes a new random authkey of [`DEFAULT_KEY_LEN`] bytes to `path`, mode 0600.
/// Refuses to overwrite an existing file; see [`keygen_with`].
pub fn keygen(path: impl AsRef<Path>) -> Result<(), KeyError> {
    keygen_with(path, DEFAULT_KEY_LEN, false)
}

/// Writes a new random authkey of `len` bytes (32..=4096) to `path`.
///
/// The file appears atomically with mode 0600 and complete contents: the key is
/// written to a temporary file (created with mode 0600, never wider) in the same
/// directory, fsynced, then linked into place (without `force`, which fails if
/// `path` exists, even if it appeared concurrently) or renamed over `path`
/// (with `force`). The directory is fsynced so the new name survives a crash.
pub fn keygen_with(path: impl AsRef<Path>, len: usize, force: bool) -> Result<(), KeyError> {
    let path = path.as_ref();
    let key = AuthKey::generate(len)?;
    if !force && fs::symlink_metadata(path).is_ok() {
        // Early, friendly refusal; the hard_link below is the race-free check.
        return Err(KeyError::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let file_name = path.file_name().ok_or_else(|| KeyError::NotAFile {
        path: path.to_path_buf(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| KeyError::Random)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{:016x}", u64::from_le_bytes(suffix)));
    let tmp = TempPath(dir.join(tmp_name));
    // Not from_io: "authkey file does not exist" would be a confusing answer
    // to keygen; the raw OS error plus the path and step is clearer here.
    let io_err = |path: &Path, action: &'static str| {
        let path = path.to_path_buf();
        move |source| KeyError::Io {
            path,
            action,
            source,
        }
    };

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp.0)
        .map_err(io_err(path, "creating key file"))?;
    // mode() is filtered by the umask, which can only remove bits; set it
    // explicitly anyway so the result never depends on the environment.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err(path, "setting permissions of key file"))?;
    file.write_all(&key.bytes)
        .map_err(io_err(path, "writing key file"))?;
    file.sync_all().map_err(io_err(path, "syncing key file"))?;
    drop(file);

    if force {
        fs::rename(&tmp.0, path).map_err(io_err(path, "renaming new key to"))?;
    } else {
        fs::hard_link(&tmp.0, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path, "linking new key to")(e)
            }
        })?;
    }
    drop(tmp); // removes the temporary name (already gone after a rename)
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir, "syncing directory"))?;
    Ok(())
}

/// Removes a temporary file on drop, so failed keygens leave no debris.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Key derivation
// ---------------------------------------------------------------------------

/// Output length marker for HKDF-Expand.
struct KeyLen(usize);

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// The raw 32-byte AEAD key for one sender start. Separate from
/// [`derive_key`] so tests can compare keys; callers must wipe the result.
fn derive_key_bytes(
    prk: &hkdf::Prk,
    cipher: Cipher,
    sender: u32,
    boot: u64,
    boot_salt: u64,
) -> [u8; DERIVED_KEY_LEN] {
    let sender = sender.to_le_bytes();
    let boot = boot.to_le_bytes();
    let boot_salt = boot_salt.to_le_bytes();
    let cipher_id = [cipher.wire_id()];
    let info: [&[u8]; 5] = [KDF_INFO_PACKET, &sender, &boot, &boot_salt, &cipher_id];
    let mut out = [0u8; DERIVED_KEY_LEN];
    prk.expand(&info, KeyLen(DERIVED_KEY_LEN))
        .and_then(|okm| okm.fill(&mut out))
        // Only fails for lengths > 255 * 32 bytes; 32 is a constant.
        .expect("HKDF-SHA256 expand to 32 bytes cannot fail");
    out
}

/// The AEAD key for one sender start, ready to use.
fn derive_key(
    prk: &hkdf::Prk,
    algorithm: &'static aead::Algorithm,
    cipher: Cipher,
    sender: u32,
    boot: u64,
    boot_salt: u64,
) -> LessSafeKey {
    let mut raw = derive_key_bytes(prk, cipher, sender, boot, boot_salt);
    let key = UnboundKey::new(algorithm, &raw)
        // Both algorithms take exactly 32-byte keys.
        .expect("32-byte key is valid for AES-256-GCM and ChaCha20-Poly1305");
    raw.fill(0);
    std::hint::black_box(&mut raw);
    LessSafeKey::new(key)
}

fn nonce_for(counter: u64) -> Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[..8].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

// ---------------------------------------------------------------------------
// Sealer
// ---------------------------------------------------------------------------

/// Errors from creating a [`Sealer`] or sealing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// Node id 0 is reserved (receivers reject it as a malformed header).
    InvalidSender,
    /// All 2^64 - 1 counters of this Sealer are used; reusing one would repeat a
    /// nonce. Restart with a higher boot to continue.
    CounterExhausted,
    /// The system random number generator failed while choosing the boot salt.
    Random,
    /// The AEAD refused the input (only for payloads of many GiB).
    PayloadTooLarge,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::InvalidSender => "node id 0 is reserved and cannot send",
            SealError::CounterExhausted => {
                "packet counter exhausted for this boot; restart the node with a higher boot"
            }
            SealError::Random => "the system random number generator failed",
            SealError::PayloadTooLarge => "payload too large for the AEAD",
        })
    }
}

impl std::error::Error for SealError {}

/// Seals outgoing frames for one local node during one process start.
///
/// # Boot contract
///
/// `boot` must strictly increase across restarts of the same node id (the
/// runtime uses wall-clock microseconds, max'ed with the persisted previous
/// boot plus one). Receivers use it to refuse replayed frames of earlier starts:
/// after they have seen boot `b`, frames with a boot below `b` are
/// [`Reject::StaleBoot`]. Nonce safety does *not* depend on this contract (a
/// random per-Sealer salt also enters the key), but a violation makes peers
/// that saw the earlier start refuse the node until its boot moves past it.
///
/// Create exactly one Sealer per node id per process start and never clone its
/// state: two Sealers with the same key would reuse counters (the random salt
/// makes two *constructed* Sealers safe, which is why `Sealer` is not `Clone`).
pub struct Sealer {
    cipher: Cipher,
    /// `None` for [`Cipher::None`].
    key: Option<LessSafeKey>,
    /// Pre-built header; only the counter bytes change per frame.
    header: [u8; HEADER_LEN],
    /// Next counter to use; `None` once `u64::MAX` has been used.
    next_counter: Option<u64>,
}

impl Sealer {
    /// Creates the Sealer for node `sender` (non-zero) in cluster `cluster_name`,
    /// started with `boot` (see the boot contract above). With [`Cipher::None`]
    /// the key is not used.
    pub fn new(
        key: &AuthKey,
        cipher: Cipher,
        cluster_name: &str,
        sender: u32,
        boot: u64,
    ) -> Result<Sealer, SealError> {
        let prk = cipher
            .algorithm()
            .map(|alg| (alg, key.cluster_prk(cluster_name)));
        Self::build(prk, cipher, sender, boot)
    }

    /// A Sealer for [`Cipher::None`] when no authkey is configured. Frames are
    /// neither encrypted nor authenticated.
    pub fn without_crypto(sender: u32, boot: u64) -> Result<Sealer, SealError> {
        Self::build(None, Cipher::None, sender, boot)
    }

    fn build(
        prk: Option<(&'static aead::Algorithm, hkdf::Prk)>,
        cipher: Cipher,
        sender: u32,
        boot: u64,
    ) -> Result<Sealer, SealError> {
        if sender == 0 {
            return Err(SealError::InvalidSender);
        }
        let mut salt = [0u8; 8];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| SealError::Random)?;
        let boot_salt = u64::from_le_bytes(salt);
        let key = prk.map(|(alg, prk)| derive_key(&prk, alg, cipher, sender, boot, boot_salt));
        let mut header = [0u8; HEADER_LEN];
        header[OFF_VERSION] = VERSION;
        header[OFF_CIPHER] = cipher.wire_id();
        header[OFF_SENDER..OFF_BOOT].copy_from_slice(&sender.to_le_bytes());
        header[OFF_BOOT..OFF_SALT].copy_from_slice(&boot.to_le_bytes());
        header[OFF_SALT..OFF_COUNTER].copy_from_slice(&boot_salt.to_le_bytes());
        Ok(Sealer {
            cipher,
            key,
            header,
            next_counter: Some(1),
        })
    }

    /// Seals `plaintext` into one frame appended to `out`
    /// (`plaintext.len() + self.overhead()` bytes). Reserves once and encrypts in
    /// place inside `out`; no other allocation. On error `out` is unchanged and
    /// no counter is consumed. `CounterExhausted` is permanent for this Sealer.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        let counter = self.next_counter.ok_or(SealError::CounterExhausted)?;
        let start = out.len();
        out.reserve(plaintext.len() + self.cipher.overhead());
        out.extend_from_slice(&self.header);
        out[start + OFF_COUNTER..start + HEADER_LEN].copy_from_slice(&counter.to_le_bytes());
        out.extend_from_slice(plaintext);
        if let Some(key) = &self.key {
            let (header, body) = out[start..].split_at_mut(HEADER_LEN);
            match key.seal_in_place_separate_tag(nonce_for(counter), Aad::from(&*header), body) {
                Ok(tag) => out.extend_from_slice(tag.as_ref()),
                Err(_) => {
                    out.truncate(start);
                    return Err(SealError::PayloadTooLarge);
                }
            }
        }
        // Advance only after success; checked_add makes exhaustion sticky instead of wrapping.
        self.next_counter = counter.checked_add(1);
        Ok(())
    }

    /// The cipher in use.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Bytes each frame adds to its payload.
    pub fn overhead(&self) -> usize {
        self.cipher.overhead()
    }

    /// The counter the next frame will carry (`None` once exhausted).
    pub fn next_counter(&self) -> Option<u64> {
        self.next_counter
    }

    /// Test hook: jump the counter forward (never backward, so it cannot cause reuse).
    #[cfg(test)]
    fn skip_to_counter(&mut self, next: u64) {
        assert!(self.next_counter.is_some_and(|c| next >= c));
        self.next_counter = Some(next);
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = parse_header(&self.header);
        f.debug_struct("Sealer")
            .field("cipher", &self.cipher)
            .field("sender", &h.sender)
            .field("boot", &h.boot)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------

/// Why the [`Opener`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter than the header (plus tag, for an AEAD cipher).
    TooShort = 0,
    /// Unknown version or cipher byte, sender 0 or counter 0.
    BadHeader = 1,
    /// A frame of another cipher than the one configured (including `none`
    /// frames at an encrypting node and vice versa).
    CipherMismatch = 2,
    /// The AEAD tag did not verify: another key or cluster name, or a modified
    /// or forged frame.
    Unauthenticated = 3,
    /// An authentic frame whose counter was already accepted or is older than
    /// the replay window.
    Replayed = 4,
    /// An authentic frame from an older start of a sender than one already seen
    /// (or the same boot with another salt: a sender that broke the boot contract).
    StaleBoot = 5,
}

impl Reject {
    /// Number of reasons.
    pub const COUNT: usize = 6;

    /// All reasons, in counter-index order.
    pub const ALL: [Reject; Reject::COUNT] = [
        Reject::TooShort,
        Reject::BadHeader,
        Reject::CipherMismatch,
        Reject::Unauthenticated,
        Reject::Replayed,
        Reject::StaleBoot,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reject::TooShort => "too_short",
            Reject::BadHeader => "bad_header",
            Reject::CipherMismatch => "cipher_mismatch",
            Reject::Unauthenticated => "unauthenticated",
            Reject::Replayed => "replayed",
            Reject::StaleBoot => "stale_boot",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::error::Error for Reject {}

/// Count of rejected frames per [`Reject`] reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounters {
    counts: [u64; Reject::COUNT],
}

impl RejectCounters {
    /// Frames rejected for `reason`.
    pub fn get(&self, reason: Reject) -> u64 {
        self.counts[reason as usize]
    }

    /// Frames rejected for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(reason, count)` for every reason, in [`Reject::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Reject, u64)> + '_ {
        Reject::ALL.into_iter().map(|r| (r, self.get(r)))
    }

    fn bump(&mut self, reason: Reject) {
        let c = &mut self.counts[reason as usize];
        *c = c.saturating_add(1);
    }
}

// ---------------------------------------------------------------------------
// Replay window
// ---------------------------------------------------------------------------

/// Words in the bitmap ring. The window proper is `REPLAY_WINDOW` (16 words);
/// the ring is twice that so the word a new block reuses is always older than
/// the window, and a power of two so the index is a mask.
const WINDOW_WORDS: usize = 32;

/// Sliding window of accepted counters (RFC 6479 style: a ring of bitmap words
/// indexed by `counter / 64`, cleared lazily as the top advances, so advancing
/// by one costs O(1) instead of shifting the whole bitmap).
#[derive(Clone)]
struct ReplayWindow {
    /// Highest counter accepted so far (0 = none; counters start at 1).
    top: u64,
    bits: [u64; WINDOW_WORDS],
}

impl ReplayWindow {
    fn new() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WINDOW_WORDS],
        }
    }

    fn slot(counter: u64) -> usize {
        ((counter / 64) as usize) & (WINDOW_WORDS - 1)
    }

    /// Whether `counter` would be accepted now (no state change).
    fn is_fresh(&self, counter: u64) -> bool {
        if counter > self.top {
            return true;
        }
        if self.top - counter >= REPLAY_WINDOW {
            return false;
        }
        self.bits[Self::slot(counter)] & (1 << (counter % 64)) == 0
    }

    /// Records `counter`; returns false (and changes nothing) if it is a
    /// duplicate or too old.
    fn accept(&mut self, counter: u64) -> bool {
        if !self.is_fresh(counter) {
            return false;
        }
        if counter > self.top {
            let old_block = self.top / 64;
            let new_block = counter / 64;
            if new_block - old_block >= WINDOW_WORDS as u64 {
                self.bits = [0; WINDOW_WORDS];
            } else {
                for block in old_block + 1..=new_block {
                    self.bits[Self::slot(block * 64)] = 0;
                }
            }
            self.top = counter;
        }
        self.bits[Self::slot(counter)] |= 1 << (counter % 64);
        true
    }
}

// ---------------------------------------------------------------------------
// Opener
// ---------------------------------------------------------------------------

/// Decoded header fields.
#[derive(Debug, Clone, Copy)]
struct Header {
    version: u8,
    cipher: u8,
    sender: u32,
    boot: u64,
    boot_salt: u64,
    counter: u64,
}

fn parse_header(h: &[u8; HEADER_LEN]) -> Header {
    let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
    Header {
        version: h[OFF_VERSION],
        cipher: h[OFF_CIPHER],
        sender: u32_at(OFF_SENDER),
        boot: u64_at(OFF_BOOT),
        boot_salt: u64_at(OFF_SALT),
        counter: u64_at(OFF_COUNTER),
    }
}

/// What the Opener remembers about one sender: only its newest start, because
/// older starts are refused anyway. Created and changed only by authentic frames.
struct SenderState {
    boot: u64,
    boot_salt: u64,
    /// Cached key for (sender, boot, boot_salt); `None` for [`Cipher::None`].
    key: Option<LessSafeKey>,
    window: ReplayWindow,
}

/// A frame the [`Opener`] accepted.
#[derive(Debug)]
pub struct Opened<'a> {
    /// The authenticated sender node id. The runtime must bind any node id in
    /// the payload to this one. (With `Cipher::None` it is merely claimed.)
    pub sender: u32,
    /// The sender's boot.
    pub boot: u64,
    /// The frame counter.
    pub counter: u64,
    /// The decrypted payload; it is `frame[HEADER_LEN..HEADER_LEN + payload.len()]`,
    /// so callers holding a `BytesMut` can slice the same range out of it.
    pub payload: &'a [u8],
}

/// Verifies, decrypts and replay-checks incoming frames for one local node.
///
/// Processing order, chosen so nothing unauthenticated is parsed beyond the
/// fixed header and nothing unauthenticated changes state:
/// 1. length ≥ header → header fields (version, cipher, sender ≠ 0,
///    counter ≠ 0) → length ≥ header + tag;
/// 2. key for `(sender, boot, boot_salt)`: the cached key of the sender's
///    newest start, else derived on the spot (not cached yet);
/// 3. AEAD open in place (authentication);
/// 4. only now, replay checks and state updates: older boot → `StaleBoot`,
///    newer boot → replace the sender's state (caching the derived key),
///    then the sliding window → `Replayed` or accept.
///
/// The key cache therefore holds exactly one key per sender that has ever sent
/// an authentic frame; forgers cannot grow or churn it.
pub struct Opener {
    cipher: Cipher,
    /// `(algorithm, cluster PRK)`; `None` for [`Cipher::None`].
    kdf: Option<(&'static aead::Algorithm, hkdf::Prk)>,
    senders: HashMap<u32, SenderState>,
    rejects: RejectCounters,
    accepted: u64,
}

impl Opener {
    /// Creates an Opener for frames sealed with `cipher` under `key` in
    /// `cluster_name`. With [`Cipher::None`] the key is not used.
    pub fn new(key: &AuthKey, cipher: Cipher, cluster_name: &str) -> Opener {
        let kdf = cipher
            .algorithm()
            .map(|alg| (alg, key.cluster_prk(cluster_name)));
        Opener {
            cipher,
            kdf,
            senders: HashMap::new(),
            rejects: RejectCounters::default(),
            accepted: 0,
        }
    }

    /// An Opener for [`Cipher::None`] when no authkey is configured. It
    /// authenticates nothing; see the module documentation.
    pub fn without_crypto() -> Opener {
        Opener {
            cipher: Cipher::None,
            kdf: None,
            senders: HashMap::new(),
            rejects: RejectCounters::default(),
            accepted: 0,
        }
    }

    /// Verifies and decrypts `frame` in place and runs the replay checks.
    /// Every rejection is counted in [`Opener::stats`]. After a rejection the
    /// contents of `frame` are unspecified (the AEAD may have scribbled on it).
    pub fn open<'a>(&mut self, frame: &'a mut [u8]) -> Result<Opened<'a>, Reject> {
        match self.open_inner(frame) {
            Ok((h, len)) => {
                self.accepted += 1;
                let frame: &'a [u8] = frame;
                Ok(Opened {
                    sender: h.sender,
                    boot: h.boot,
                    counter: h.counter,
                    payload: &frame[HEADER_LEN..HEADER_LEN + len],
                })
            }
            Err(r) => {
                self.rejects.bump(r);
                Err(r)
            }
        }
    }

    /// Returns the header and the plaintext length.
    fn open_inner(&mut self, frame: &mut [u8]) -> Result<(Header, usize), Reject> {
        let Some(header_bytes) = frame.first_chunk::<HEADER_LEN>() else {
            return Err(Reject::TooShort);
        };
        let h = parse_header(header_bytes);
        if h.version != VERSION {
            return Err(Reject::BadHeader);
        }
        let cipher = Cipher::from_wire_id(h.cipher).ok_or(Reject::BadHeader)?;
        if cipher != self.cipher {
            return Err(Reject::CipherMismatch);
        }
        // Sealers never use either value; rejecting them early is free.
        if h.sender == 0 || h.counter == 0 {
            return Err(Reject::BadHeader);
        }
        if frame.len() < HEADER_LEN + cipher.tag_len() {
            return Err(Reject::TooShort);
        }

        let known = self.senders.get(&h.sender);
        let same_start = known.is_some_and(|s| s.boot == h.boot && s.boot_salt == h.boot_salt);

        // Authenticate. `fresh_key` is a key derived for a start we have not
        // cached; it is only kept if the frame is authentic and its boot is newer.
        let mut fresh_key = None;
        let plaintext_len = match &self.kdf {
            None => frame.len() - HEADER_LEN,
            Some((alg, prk)) => {
                let key = match known {
                    Some(state) if same_start => state.key.as_ref().expect("AEAD state has a key"),
                    _ => fresh_key.insert(derive_key(
                        prk,
                        alg,
                        cipher,
                        h.sender,
                        h.boot,
                        h.boot_salt,
                    )),
                };
                let (aad, body) = frame.split_at_mut(HEADER_LEN);
                key.open_in_place(nonce_for(h.counter), Aad::from(&*aad), body)
                    .map_err(|_| Reject::Unauthenticated)?
                    .len()
            }
        };

        // Authentic from here on: replay checks, then state updates.
        match self.senders.get_mut(&h.sender) {
            Some(state) if same_start => {
                if !state.window.accept(h.counter) {
                    return Err(Reject::Replayed);
                }
            }
            // Same boot with another salt is not newer either (see StaleBoot).
            Some(state) if h.boot <= state.boot => return Err(Reject::StaleBoot),
            _ => {
                // First frame from this sender, or a newer start: a fresh window.
                let mut window = ReplayWindow::new();
                window.accept(h.counter);
                self.senders.insert(
                    h.sender,
                    SenderState {
                        boot: h.boot,
                        boot_salt: h.boot_salt,
                        key: fresh_key,
                        window,
                    },
                );
            }
        }
        Ok((h, plaintext_len))
    }

    /// The cipher this Opener accepts.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Rejected frames by reason.
    pub fn stats(&self) -> &RejectCounters {
        &self.rejects
    }

    /// Frames accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// The newest boot accepted from `sender`, if any frame of it was accepted.
    pub fn newest_boot(&self, sender: u32) -> Option<u64> {
        self.senders.get(&sender).map(|s| s.boot)
    }

    /// Number of senders with replay state (and, with a cipher, a cached key).
    pub fn known_senders(&self) -> usize {
        self.senders.len()
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("cipher", &self.cipher)
            .field("known_senders", &self.senders.len())
            .field("accepted", &self.accepted)
            .field("rejects", &self.rejects)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    const CLUSTER: &str = "test-cluster";
    const AEADS: [Cipher; 2] = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305];

    fn key(fill: u8) -> AuthKey {
        AuthKey::from_bytes(&[fill; 64]).unwrap()
    }

    fn sealer(k: &AuthKey, cipher: Cipher, sender: u32, boot: u64) -> Sealer {
        Sealer::new(k, cipher, CLUSTER, sender, boot).unwrap()
    }

    fn seal(s: &mut Sealer, pt: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        s.seal(pt, &mut out).unwrap();
        out
    }

    /// Opens a copy, so the caller can replay the original frame.
    fn open(o: &mut Opener, frame: &[u8]) -> Result<Vec<u8>, Reject> {
        let mut f = frame.to_vec();
        o.open(&mut f).map(|op| op.payload.to_vec())
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    // --- Cipher -----------------------------------------------------------

    #[test]
    fn cipher_names_round_trip_and_default_is_aes() {
        for c in Cipher::ALL {
            assert_eq!(c.to_string().parse::<Cipher>().unwrap(), c);
            assert_eq!(Cipher::from_wire_id(c.wire_id()), Some(c));
        }
        assert_eq!("AES256GCM ".parse::<Cipher>().unwrap(), Cipher::Aes256Gcm);
        assert_eq!(Cipher::default(), Cipher::Aes256Gcm);
        let err = "aes128".parse::<Cipher>().unwrap_err().to_string();
        assert!(
            err.contains("aes128") && err.contains("chacha20poly1305"),
            "{err}"
        );
        assert_eq!(Cipher::from_wire_id(3), None);
    }

    // --- Round trips --------------------------------------------------------

    #[test]
    fn round_trip_every_cipher_and_size_up_to_9000() {
        let k = key(1);
        for cipher in Cipher::ALL {
            let mut s = sealer(&k, cipher, 7, 100);
            let mut o = Opener::new(&k, cipher, CLUSTER);
            let mut out = Vec::new();
            for len in 0..=9000 {
                let pt = payload(len);
                out.clear();
                s.seal(&pt, &mut out).unwrap();
                assert_eq!(out.len(), len + cipher.overhead());
                if cipher.is_authenticated() && len >= 16 {
                    assert_ne!(&out[HEADER_LEN..HEADER_LEN + len], &pt[..], "not encrypted");
                }
                let opened = o.open(&mut out).unwrap();
                assert_eq!(opened.payload, &pt[..], "{cipher} len {len}");
                assert_eq!((opened.sender, opened.boot), (7, 100));
                assert_eq!(opened.counter, len as u64 + 1);
            }
            assert_eq!(o.accepted(), 9001);
            assert_eq!(o.stats().total(), 0);
        }
    }

    #[test]
    fn seal_appends_and_reserves_once() {
        let k = key(1);
        let mut s = sealer(&k, Cipher::Aes256Gcm, 1, 1);
        let mut out = b"prefix".to_vec();
        s.seal(b"hello", &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out.len(), 6 + 5 + OVERHEAD);
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        assert_eq!(o.open(&mut out[6..]).unwrap().payload, b"hello");

        // With exactly enough capacity, sealing must not reallocate.
        let mut out = Vec::with_capacity(1400 + OVERHEAD);
        let ptr = out.as_ptr();
        s.seal(&[0u8; 1400], &mut out).unwrap();
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn none_cipher_carries_plaintext_and_still_filters_duplicates() {
        let mut s = Sealer::without_crypto(3, 9).unwrap();
        let mut o = Opener::without_crypto();
        let f = seal(&mut s, b"clear");
        assert_eq!(f.len(), HEADER_LEN + 5);
        assert_eq!(f[OFF_CIPHER], 0);
        assert_eq!(&f[HEADER_LEN..], b"clear");
        assert_eq!(open(&mut o, &f).unwrap(), b"clear");
        assert_eq!(open(&mut o, &f), Err(Reject::Replayed));
        // An explicit None via `new` is the same thing.
        let k = key(1);
        let mut s2 = sealer(&k, Cipher::None, 4, 1);
        assert_eq!(open(&mut o, &seal(&mut s2, b"x")).unwrap(), b"x");
    }

    // --- Wrong key / cluster / cipher ---------------------------------------

    #[test]
    fn different_authkey_cannot_inject_or_read() {
        for cipher in AEADS {
            let mut s = sealer(&key(1), cipher, 1, 1);
            let mut o = Opener::new(&key(2), cipher, CLUSTER);
            let f = seal(&mut s, b"join me");
            assert_eq!(open(&mut o, &f), Err(Reject::Unauthenticated));
            assert_eq!(o.stats().get(Reject::Unauthenticated), 1);
            assert_eq!(o.known_senders(), 0, "a forged frame must not create state");
        }
    }

    #[test]
    fn different_cluster_name_is_unauthenticated() {
        let k = key(1);
        for cipher in AEADS {
            let mut s = Sealer::new(&k, cipher, "alpha", 1, 1).unwrap();
            let mut o = Opener::new(&k, cipher, "beta");
            assert_eq!(
                open(&mut o, &seal(&mut s, b"x")),
                Err(Reject::Unauthenticated)
            );
            // A cluster name that only extends the other one still differs.
            let mut o = Opener::new(&k, cipher, "alphabet");
            assert_eq!(
                open(&mut o, &seal(&mut s, b"x")),
                Err(Reject::Unauthenticated)
            );
        }
    }

    #[test]
    fn cipher_mismatch_both_ways() {
        let k = key(1);
        let mut aes = sealer(&k, Cipher::Aes256Gcm, 1, 1);
        let mut chacha = sealer(&k, Cipher::ChaCha20Poly1305, 1, 1);
        let mut none = Sealer::without_crypto(1, 1).unwrap();
        let mut o_aes = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        let mut o_none = Opener::without_crypto();
        assert_eq!(
            open(&mut o_aes, &seal(&mut none, b"x")),
            Err(Reject::CipherMismatch)
        );
        assert_eq!(
            open(&mut o_aes, &seal(&mut chacha, b"x")),
            Err(Reject::CipherMismatch)
        );
        assert_eq!(
            open(&mut o_none, &seal(&mut aes, b"x")),
            Err(Reject::CipherMismatch)
        );
        assert_eq!(o_aes.stats().get(Reject::CipherMismatch), 2);
        assert_eq!(o_none.stats().get(Reject::CipherMismatch), 1);
    }

    #[test]
    fn malformed_headers_are_rejected_by_reason() {
        let k = key(1);
        let mut s = sealer(&k, Cipher::Aes256Gcm, 1, 1);
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        let good = seal(&mut s, b"payload");

        assert_eq!(open(&mut o, &[]), Err(Reject::TooShort));
        assert_eq!(open(&mut o, &good[..HEADER_LEN - 1]), Err(Reject::TooShort));
        // Header intact but the tag cut off.
        assert_eq!(
            open(&mut o, &good[..HEADER_LEN + TAG_LEN - 1]),
            Err(Reject::TooShort)
        );

        let mut bad = good.clone();
        bad[OFF_VERSION] = 2;
        assert_eq!(open(&mut o, &bad), Err(Reject::BadHeader));
        let mut bad = good.clone();
        bad[OFF_CIPHER] = 0xfe;
        assert_eq!(open(&mut o, &bad), Err(Reject::BadHeader));
        let mut bad = good.clone();
        bad[OFF_SENDER..OFF_BOOT].fill(0);
        assert_eq!(open(&mut o, &bad), Err(Reject::BadHeader));
        let mut bad = good.clone();
        bad[OFF_COUNTER..HEADER_LEN].fill(0);
        assert_eq!(open(&mut o, &bad), Err(Reject::BadHeader));

        let st = o.stats();
        assert_eq!(st.get(Reject::TooShort), 3);
        assert_eq!(st.get(Reject::BadHeader), 4);
        assert_eq!(st.total(), 7);
        assert_eq!(st.iter().count(), Reject::COUNT);
        // Nothing above touched the state: the genuine frame still opens.
        assert_eq!(open(&mut o, &good).unwrap(), b"payload");
    }

    #[test]
    fn reject_names_are_unique_and_indexed() {
        let mut names: Vec<_> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(r.to_string(), r.as_str());
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reject::COUNT);
    }

    // --- Replay ---------------------------------------------------------------

    #[test]
    fn replayed_frame_rejected_and_earlier_frame_accepted_once() {
        let k = key(1);
        let mut s = sealer(&k, Cipher::Aes256Gcm, 1, 1);
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        let f1 = seal(&mut s, b"one");
        let f2 = seal(&mut s, b"two");
        assert_eq!(open(&mut o, &f2).unwrap(), b"two");
        assert_eq!(open(&mut o, &f2), Err(Reject::Replayed));
        assert_eq!(open(&mut o, &f1).unwrap(), b"one");
        assert_eq!(open(&mut o, &f1), Err(Reject::Replayed));
        assert_eq!(o.stats().get(Reject::Replayed), 2);
    }

    #[test]
    fn out_of_order_within_window_accepted_once_each() {
        let k = key(1);
        let mut s = sealer(&k, Cipher::ChaCha20Poly1305, 1, 1);
        let mut o = Opener::new(&k, Cipher::ChaCha20Poly1305, CLUSTER);
        let frames: Vec<_> = (0..REPLAY_WINDOW).map(|_| seal(&mut s, b"m")).collect();
        // Newest first (so every other counter is behind the top), then the
        // rest in a scrambled order (i * 7919 mod 1024 is a permutation).
        let n = frames.len();
        let mut order = vec![n - 1];
        order.extend((0..n).map(|i| (i * 7919) % n).filter(|&i| i != n - 1));
        assert_eq!(order.len(), n);
        for &i in &order {
            assert!(open(&mut o, &frames[i]).is_ok(), "frame {i}");
        }
        for &i in &order {
            assert_eq!(open(&mut o, &frames[i]), Err(Reject::Replayed), "frame {i}");
        }
    }

    #[test]
    fn older_than_window_is_replayed() {
        let k = key(1);
        let mut s = sealer(&k, Cipher::Aes256Gcm, 1, 1);
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        let first = seal(&mut s, b"old"); // counter 1
        for _ in 2..=REPLAY_WINDOW {
            seal(&mut s, b"m"); // counters 2..=REPLAY_WINDOW, never delivered
        }
        let newest = seal(&mut s, b"new"); // counter REPLAY_WINDOW + 1
        assert_eq!(open(&mut o, &newest).unwrap(), b"new");
        // Counter 1 is exactly REPLAY_WINDOW behind the top: outside.
        assert_eq!(open(&mut o, &first), Err(Reject::Replayed));
        // Counter 2 would be the oldest inside; REPLAY_WINDOW is inside too.
        let mut s2 = sealer(&k, Cipher::Aes256Gcm, 2, 1);
        let f: Vec<_> = (0..REPLAY_WINDOW + 1)
            .map(|_| seal(&mut s2, b"m"))
            .collect();
        assert!(open(&mut o, &f[REPLAY_WINDOW as usize]).is_ok()); // counter 1025
        assert!(open(&mut o, &f[1]).is_ok()); // counter 2: top - 1023
        assert_eq!(open(&mut o, &f[0]), Err(Reject::Replayed)); // counter 1: top - 1024
    }

    #[test]
    fn restart_with_higher_boot_makes_old_boot_stale() {
        let k = key(1);
        for cipher in Cipher::ALL {
            let mut o = Opener::new(&k, cipher, CLUSTER);
            let mut old = sealer(&k, cipher, 5, 1_000);
            let old1 = seal(&mut old, b"a");
            let old2 = seal(&mut old, b"b");
            assert!(open(&mut o, &old1).is_ok());
            let mut new = sealer(&k, cipher, 5, 2_000);
            assert_eq!(open(&mut o, &seal(&mut new, b"c")).unwrap(), b"c");
            assert_eq!(o.newest_boot(5), Some(2_000));
            assert_eq!(open(&mut o, &old2), Err(Reject::StaleBoot), "{cipher}");
            assert_eq!(open(&mut o, &old1), Err(Reject::StaleBoot));
            // Counters restart at 1 for the new boot and are accepted.
            assert!(open(&mut o, &seal(&mut new, b"d")).is_ok());
            assert_eq!(o.stats().get(Reject::StaleBoot), 2);
        }
    }

    #[test]
    fn reused_boot_with_new_salt_is_refused_not_nonce_reused() {
        // A restart that breaks the boot contract (same boot again): the random
        // salt gives it a different key, and peers refuse it as stale instead of
        // letting two starts share a window.
        let k = key(1);
        let mut a = sealer(&k, Cipher::Aes256Gcm, 5, 42);
        let mut b = sealer(&k, Cipher::Aes256Gcm, 5, 42);
        let fa = seal(&mut a, b"same plaintext");
        let fb = seal(&mut b, b"same plaintext");
        assert_eq!(fa[OFF_COUNTER..HEADER_LEN], fb[OFF_COUNTER..HEADER_LEN]);
        assert_ne!(
            fa[HEADER_LEN..],
            fb[HEADER_LEN..],
            "same nonce must mean another key"
        );
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        assert!(open(&mut o, &fa).is_ok());
        assert_eq!(open(&mut o, &fb), Err(Reject::StaleBoot));
        assert!(open(&mut o, &seal(&mut a, b"x")).is_ok());
    }

    #[test]
    fn forged_newer_boot_does_not_advance_boot() {
        let k = key(1);
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        let mut genuine = sealer(&k, Cipher::Aes256Gcm, 5, 10);
        assert!(open(&mut o, &seal(&mut genuine, b"a")).is_ok());
        // An attacker with another key claims a newer boot of node 5 ...
        let mut forger = sealer(&key(9), Cipher::Aes256Gcm, 5, u64::MAX);
        assert_eq!(
            open(&mut o, &seal(&mut forger, b"evil")),
            Err(Reject::Unauthenticated)
        );
        // ... or rewrites the boot of a genuine frame.
        let mut f = seal(&mut genuine, b"b");
        let keep = f.clone();
        f[OFF_BOOT..OFF_SALT].copy_from_slice(&11u64.to_le_bytes());
        assert_eq!(open(&mut o, &f), Err(Reject::Unauthenticated));
        assert_eq!(o.newest_boot(5), Some(10));
        assert_eq!(open(&mut o, &keep).unwrap(), b"b");
    }

    #[test]
    fn forged_high_counter_does_not_advance_window() {
        let k = key(1);
        let mut o = Opener::new(&k, Cipher::ChaCha20Poly1305, CLUSTER);
        let mut s = sealer(&k, Cipher::ChaCha20Poly1305, 5, 10);
        let f1 = seal(&mut s, b"1");
        let f2 = seal(&mut s, b"2");
        assert!(open(&mut o, &f2).is_ok());
        let mut forged = f1.clone();
        forged[OFF_COUNTER..HEADER_LEN].copy_from_slice(&1_000_000u64.to_le_bytes());
        assert_eq!(open(&mut o, &forged), Err(Reject::Unauthenticated));
        // Had the window moved to 1_000_000, counter 1 would now be too old.
        assert!(open(&mut o, &f1).is_ok());
    }

    #[test]
    fn unknown_sender_forgery_creates_no_state() {
        let k = key(1);
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        let mut forger = sealer(&key(2), Cipher::Aes256Gcm, 77, 1);
        for _ in 0..100 {
            assert_eq!(
                open(&mut o, &seal(&mut forger, b"x")),
                Err(Reject::Unauthenticated)
            );
        }
        assert_eq!(o.known_senders(), 0);
        assert_eq!(o.newest_boot(77), None);
    }

    #[test]
    fn counter_overflow_is_refused_never_wrapped() {
        let k = key(1);
        let mut s = sealer(&k, Cipher::Aes256Gcm, 1, 1);
        s.skip_to_counter(u64::MAX - 1);
        let mut o = Opener::new(&k, Cipher::Aes256Gcm, CLUSTER);
        assert_eq!(
            o.open(&mut seal(&mut s, b"a")).unwrap().counter,
            u64::MAX - 1
        );
        assert_eq!(o.open(&mut seal(&mut s, b"b")).unwrap().counter, u64::MAX);
        assert_eq!(s.next_counter(), None);
        let mut out = vec![1, 2, 3];
        assert_eq!(s.seal(b"c", &mut out), Err(SealError::CounterExhausted));
        assert_eq!(out, [1, 2, 3], "a failed seal leaves the buffer alone");
        assert_eq!(s.seal(b"c", &mut out), Err(SealError::CounterExhausted));
    }

    #[test]
    fn sender_zero_cannot_seal() {
        let k = key(1);
        assert_eq!(
            Sealer::new(&k, Cipher::Aes256Gcm, CLUSTER, 0, 1).unwrap_err(),
            SealError::InvalidSender
        );
        assert_eq!(
            Sealer::without_crypto(0, 1).unwrap_err(),
            SealError::InvalidSender
        );
    }

    // --- Key derivation / nonce uniqueness ----------------------------------------

    #[test]
    fn derived_keys_differ_per_sender_boot_salt_cipher_and_cluster() {
        let k = key(1);
        let prk = k.cluster_prk(CLUSTER);
        let base = derive_key_bytes(&prk, Cipher::Aes256Gcm, 1, 1, 0);
        let variants = [
            derive_key_bytes(&prk, Cipher::Aes256Gcm, 2, 1, 0),
            derive_key_bytes(&prk, Cipher::Aes256Gcm, 1, 2, 0),
            derive_key_bytes(&prk, Cipher::Aes256Gcm, 1, 1, 1),
            derive_key_bytes(&prk, Cipher::ChaCha20Poly1305, 1, 1, 0),
            derive_key_bytes(&k.cluster_prk("other"), Cipher::Aes256Gcm, 1, 1, 0),
            derive_key_bytes(&key(2).cluster_prk(CLUSTER), Cipher::Aes256Gcm, 1, 1, 0),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(&base, v, "variant {i}");
        }
        assert_eq!(base, derive_key_bytes(&prk, Cipher::Aes256Gcm, 1, 1, 0));
        assert_ne!(base, [0u8; 32]);
    }

    #[test]
    fn two_boots_of_one_sender_never_share_key_and_nonce() {
        let k = key(1);
        let mut a = sealer(&k, Cipher::Aes256Gcm, 3, 1);
        let mut b = sealer(&k, Cipher::Aes256Gcm, 3, 2);
        let pt = [0u8; 64];
        for _ in 0..10 {
            let (fa, fb) = (seal(&mut a, &pt), seal(&mut b, &pt));
            // Same counter (nonce) in both ...
            assert_eq!(fa[OFF_COUNTER..HEADER_LEN], fb[OFF_COUNTER..HEADER_LEN]);
            // ... but different keystreams and tags.
            assert_ne!(fa[HEADER_LEN..], fb[HEADER_LEN..]);
        }
        let prk = k.cluster_prk(CLUSTER);
        let salt = |f: &[u8]| u64::from_le_bytes(f[OFF_SALT..OFF_COUNTER].try_into().unwrap());
        let (fa, fb) = (seal(&mut a, b""), seal(&mut b, b""));
        assert_ne!(
            derive_key_bytes(&prk, Cipher::Aes256Gcm, 3, 1, salt(&fa)),
            derive_key_bytes(&prk, Cipher::Aes256Gcm, 3, 2, salt(&fb))
        );
    }

    // --- Replay window model ---------------------------------------------------------

    proptest! {
        #[test]
        fn replay_window_matches_model(
            ops in proptest::collection::vec((0u8..4, 0u64..3000), 1..400),
        ) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::HashSet::new();
            let mut top = 0u64;
            for (kind, x) in ops {
                // Mix small steps, big jumps and looks into the past.
                let c = match kind {
                    0 => top + 1 + x % 4,
                    1 => top + x,
                    2 => top.saturating_sub(x % 1100),
                    _ => top.saturating_sub(x),
                }.max(1);
                let expect = c > top || (top - c < REPLAY_WINDOW && !seen.contains(&c));
                prop_assert_eq!(w.is_fresh(c), expect, "fresh {}", c);
                prop_assert_eq!(w.accept(c), expect, "accept {}", c);
                if expect {
                    seen.insert(c);
                    top = top.max(c);
                }
            }
        }
    }

    // --- Hostile input ------------------------------------------------------------

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_single_bit_flip_is_rejected(
            cipher_idx in 0usize..2,
            len in 0usize..300,
            pos_seed in any::<usize>(),
            bit in 0u8..8,
        ) {
            let cipher = AEADS[cipher_idx];
            let k = key(1);
            let mut s = sealer(&k, cipher, 9, 9);
            let mut o = Opener::new(&k, cipher, CLUSTER);
            let good = seal(&mut s, &payload(len));
            let pos = pos_seed % good.len();
            let mut bad = good.clone();
            bad[pos] ^= 1 << bit;
            let r = open(&mut o, &bad);
            prop_assert!(r.is_err(), "flip at {} accepted", pos);
            if pos >= HEADER_LEN {
                prop_assert_eq!(r, Err(Reject::Unauthenticated));
            }
            // The rejected frame left no trace: the genuine one opens.
            prop_assert_eq!(open(&mut o, &good), Ok(payload(len)));
        }

        #[test]
        fn random_bytes_never_panic_or_pass(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            cipher_idx in 0usize..3,
        ) {
            let k = key(1);
            let cipher = Cipher::ALL[cipher_idx];
            let mut o = Opener::new(&k, cipher, CLUSTER);
            let mut f = bytes.clone();
            let r = o.open(&mut f).map(|op| op.payload.len());
            if cipher.is_authenticated() {
                prop_assert!(r.is_err());
            }
            prop_assert_eq!(o.stats().total() + o.accepted(), 1);
        }

        #[test]
        fn random_body_behind_plausible_header_is_unauthenticated(
            body in proptest::collection::vec(any::<u8>(), TAG_LEN..200),
            sender in 1u32..,
            boot in any::<u64>(),
            salt in any::<u64>(),
            counter in 1u64..,
            cipher_idx in 0usize..2,
        ) {
            let cipher = AEADS[cipher_idx];
            let mut f = vec![VERSION, cipher.wire_id()];
            f.extend_from_slice(&sender.to_le_bytes());
            f.extend_from_slice(&boot.to_le_bytes());
            f.extend_from_slice(&salt.to_le_bytes());
            f.extend_from_slice(&counter.to_le_bytes());
            f.extend_from_slice(&body);
            let mut o = Opener::new(&key(1), cipher, CLUSTER);
            prop_assert_eq!(o.open(&mut f).map(|_| ()), Err(Reject::Unauthenticated));
            prop_assert_eq!(o.known_senders(), 0);
        }
    }

    // --- Authkey files ------------------------------------------------------------

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn write_key_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn keygen_writes_0600_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("authkey");
        keygen(&p).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        let k = load_authkey(&p).unwrap();
        assert_eq!(k.len(), DEFAULT_KEY_LEN);
        // Only the key remains: the temporary file is gone.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // Two keygens produce different keys.
        let p2 = dir.path().join("authkey2");
        keygen_with(&p2, MIN_KEY_LEN, false).unwrap();
        assert_eq!(fs::read(&p2).unwrap().len(), MIN_KEY_LEN);
        assert_ne!(fs::read(&p).unwrap()[..32], fs::read(&p2).unwrap()[..]);
    }

    #[test]
    fn keygen_refuses_to_overwrite_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("authkey");
        keygen(&p).unwrap();
        let before = fs::read(&p).unwrap();
        let err = keygen(&p).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("overwrite"),
            "{msg}"
        );
        assert_eq!(fs::read(&p).unwrap(), before);

        keygen_with(&p, 128, true).unwrap();
        let after = fs::read(&p).unwrap();
        assert_eq!(after.len(), 128);
        assert_ne!(after[..64], before[..]);
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn keygen_refuses_bad_lengths_and_missing_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        for len in [0, 31, 4097] {
            let err = keygen_with(&p, len, false).unwrap_err();
            assert!(matches!(err, KeyError::InvalidLength { len: l } if l == len));
            assert!(err.to_string().contains("32..=4096"));
        }
        assert!(!p.exists());
        let missing = dir.path().join("missing");
        let err = keygen(missing.join("k")).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }), "{err:?}");
        let msg = err.to_string();
        // The path the caller gave, not the temporary file keygen writes first.
        assert!(msg.contains("creating key file"), "{msg}");
        assert!(
            msg.contains(&missing.join("k").display().to_string()),
            "{msg}"
        );
        assert!(!msg.contains(".tmp-"), "{msg}");
    }

    #[test]
    fn load_refuses_group_or_world_accessible_files() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o660] {
            let p = write_key_file(dir.path(), &format!("k{mode:o}"), &[7; 64], mode);
            let err = load_authkey(&p).unwrap_err();
            assert!(matches!(err, KeyError::TooPermissive { mode: m, .. } if m == mode));
            let msg = err.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
        }
        let p = write_key_file(dir.path(), "ok", &[7; 64], 0o400);
        assert_eq!(load_authkey(&p).unwrap().len(), 64);
    }

    #[test]
    fn load_refuses_short_long_missing_and_non_files() {
        let dir = tempfile::tempdir().unwrap();
        let short = write_key_file(dir.path(), "short", &[1; 31], 0o600);
        let err = load_authkey(&short).unwrap_err();
        assert!(matches!(err, KeyError::TooShort { len: 31, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("31 bytes") && msg.contains("at least 32"),
            "{msg}"
        );
        assert!(msg.contains(&short.display().to_string()));

        let empty = write_key_file(dir.path(), "empty", &[], 0o600);
        assert!(matches!(
            load_authkey(&empty),
            Err(KeyError::TooShort { len: 0, .. })
        ));

        let exact_min = write_key_file(dir.path(), "min", &[1; 32], 0o600);
        assert_eq!(load_authkey(&exact_min).unwrap().len(), 32);
        let exact_max = write_key_file(dir.path(), "max", &[1; 4096], 0o600);
        assert_eq!(load_authkey(&exact_max).unwrap().len(), 4096);
        let long = write_key_file(dir.path(), "long", &[1; 4097], 0o600);
        let err = load_authkey(&long).unwrap_err();
        assert!(matches!(err, KeyError::TooLong { .. }), "{err:?}");
        assert!(err.to_string().contains("4096"));

        let missing = dir.path().join("nope");
        let err = load_authkey(&missing).unwrap_err();
        assert!(matches!(err, KeyError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("does not exist") && msg.contains(&missing.display().to_string()));

        let sub = dir.path().join("subdir");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
        let err = load_authkey(&sub).unwrap_err();
        assert!(matches!(err, KeyError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn load_reports_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_key_file(dir.path(), "unreadable", &[1; 64], 0o000);
        match load_authkey(&p) {
            // root bypasses file permissions; then the mode check still passes
            // (no group/other bits) and the key loads.
            Ok(k) => assert_eq!(k.len(), 64),
            Err(err) => {
                assert!(matches!(err, KeyError::PermissionDenied { .. }), "{err:?}");
                assert!(err.to_string().contains("permission denied"));
            }
        }
    }

    #[test]
    fn authkey_debug_hides_the_key_and_lengths_are_checked() {
        let k = AuthKey::from_bytes(&[0xAB; 40]).unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("40") && !dbg.contains("171") && !dbg.to_lowercase().contains("ab, "));
        assert!(matches!(
            AuthKey::from_bytes(&[0; 31]),
            Err(KeyError::InvalidLength { len: 31 })
        ));
        assert!(AuthKey::from_bytes(&[0; 4097]).is_err());
        assert_eq!(AuthKey::generate(32).unwrap().len(), 32);
        let s = sealer(&k, Cipher::Aes256Gcm, 1, 1);
        assert!(!format!("{s:?}").contains("key:"));
    }

    // --- Throughput (run manually) ----------------------------------------------------

    /// `cargo test -p evs --release -- --ignored --nocapture seal_open_throughput`
    #[test]
    #[ignore]
    fn seal_open_throughput() {
        use std::time::Instant;
        let k = key(1);
        let pt = payload(1400);
        for cipher in Cipher::ALL {
            let mut s = sealer(&k, cipher, 1, 1);
            let mut o = Opener::new(&k, cipher, CLUSTER);
            let n = 200_000u32;
            let mut frame = Vec::with_capacity(pt.len() + OVERHEAD);
            let (mut seal_t, mut open_t) = (0f64, 0f64);
            for _ in 0..n {
                frame.clear();
                let t = Instant::now();
                s.seal(&pt, &mut frame).unwrap();
                let t2 = Instant::now();
                let ok = o.open(&mut frame).is_ok();
                open_t += t2.elapsed().as_secs_f64();
                seal_t += (t2 - t).as_secs_f64();
                assert!(ok);
            }
            let mbps = |secs: f64| f64::from(n) * pt.len() as f64 / secs / 1e6;
            println!(
                "{cipher:>16}: seal {:>9.0} pkt/s ({:>6.0} MB/s), open {:>9.0} pkt/s ({:>6.0} MB/s), 1400-byte payloads",
                f64::from(n) / seal_t,
                mbps(seal_t),
                f64::from(n) / open_t,
                mbps(open_t)
            );
        }
    }
}
