//! The server secret: 32 random bytes kept in a file outside the database.
//!
//! API keys are stored as HMAC-SHA256 of the key under this secret, so a leaked database (or
//! a leaked key id) does not let anyone test guesses of a weak key offline: without the secret
//! file a stored hash says nothing. A key created with an `Idempotency-Key` is derived from the
//! secret and that idempotency scope, so a retried `POST /keys` returns the same, working key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::{Path, PathBuf};

/// 32 secret bytes.
#[derive(Clone)]
pub struct ServerSecret {
    bytes: [u8; 32],
    path: PathBuf,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerSecret({})", self.path.display())
    }
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

impl ServerSecret {
    /// A secret from fixed bytes (tests and benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ServerSecret { bytes, path: PathBuf::from("(in memory)") }
    }

    /// Read the secret file: 64 hex digits (a trailing newline is fine).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the server secret {}: {e}. The keys in the database are hashed with it; \
                 give --secret-file, or start a new database with --init",
                path.display()
            )
        })?;
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{}: the server secret must be 64 hex digits", path.display()));
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(ServerSecret { bytes, path: path.to_path_buf() })
    }

    /// Create a new secret file (mode 0600); refuses to overwrite one.
    pub fn create(path: &Path) -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the server secret: {e}"))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            format!("cannot create the server secret {}: {e} (an existing secret is never overwritten)", path.display())
        })?;
        f.write_all(format!("{}\n", hex(&bytes)).as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("cannot write the server secret {}: {e}", path.display()))?;
        Ok(ServerSecret { bytes, path: path.to_path_buf() })
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes).expect("HMAC takes a key of any length");
        m.update(domain);
        m.update(&[0]);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// What the store keeps of an API key: HMAC-SHA256 under the secret, hex.
    pub fn key_hash(&self, key: &str) -> String {
        hex(&self.mac(b"keel api key", key.as_bytes()))
    }

    /// A new API key: random, or derived from the secret and an idempotency scope so that a
    /// retry of the same request gets the same key.
    pub fn new_key(&self, idempotency_scope: Option<&str>) -> Result<String, String> {
        let bytes: [u8; 24] = match idempotency_scope {
            Some(scope) => {
                let m = self.mac(b"keel api key for idempotency scope", scope.as_bytes());
                m[..24].try_into().expect("24 of 32 bytes")
            }
            None => {
                let mut b = [0u8; 24];
                getrandom::fill(&mut b).map_err(|e| format!("no randomness for a key: {e}"))?;
                b
            }
        };
        Ok(format!("keel_{}", hex(&bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hashes_and_derived_keys() {
        let a = ServerSecret::from_bytes([1; 32]);
        let b = ServerSecret::from_bytes([2; 32]);
        assert_ne!(a.key_hash("op-secret"), b.key_hash("op-secret"), "the hash depends on the secret");
        assert_eq!(a.key_hash("x").len(), 64);
        assert_eq!(a.new_key(Some("s:1")).unwrap(), a.new_key(Some("s:1")).unwrap());
        assert_ne!(a.new_key(Some("s:1")).unwrap(), a.new_key(Some("s:2")).unwrap());
        assert_ne!(a.new_key(None).unwrap(), a.new_key(None).unwrap());
    }

    #[test]
    fn files_round_trip_and_are_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("keel_secret_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        let _ = std::fs::remove_file(&p);
        let s = ServerSecret::create(&p).unwrap();
        assert_eq!(ServerSecret::load(&p).unwrap().key_hash("k"), s.key_hash("k"));
        assert!(ServerSecret::create(&p).unwrap_err().contains("never overwritten"));
        std::fs::write(&p, "zz").unwrap();
        assert!(ServerSecret::load(&p).unwrap_err().contains("64 hex digits"));
        assert!(ServerSecret::load(&dir.join("none")).unwrap_err().contains("--init"));
    }
}
