//! Envelope encryption of channel secrets.
//!
//! Each sealed value has its own random 256-bit data key (DEK). The value is encrypted
//! with the DEK (AES-256-GCM), and the DEK with the key-encryption key (KEK). Rotating
//! the KEK re-wraps the DEKs only ([`Keyring::rewrap`]); values are never decrypted
//! for it. Layout: `1 | kek id (8) | dek nonce (12) | wrapped dek (48) | nonce (12) |
//! ciphertext`. The channel id is bound as associated data, so a sealed blob moved to
//! another channel does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const WRAPPED_LEN: usize = 32 + 16;
const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN + WRAPPED_LEN + NONCE_LEN;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed under key {0}, which is not the configured key-encryption key")]
    WrongKey(String),
    #[error("sealed value does not open (tampered, or another channel's)")]
    Tampered,
}

/// The key-encryption key.
#[derive(Clone)]
pub struct Keyring {
    kek: [u8; 32],
    id: [u8; ID_LEN],
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({})", self.id())
    }
}

fn nonce_of(bytes: &[u8]) -> Nonce<aes_gcm::aead::consts::U12> {
    bytes.try_into().expect("a 12-byte nonce")
}

fn nonce() -> [u8; NONCE_LEN] {
    model::token::random_bytes::<NONCE_LEN>()
}

impl Keyring {
    pub fn new(kek: [u8; 32]) -> Keyring {
        let digest = Sha256::digest([b"palisade-kek-id:".as_slice(), &kek].concat());
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        Keyring { kek, id }
    }

    /// Parse a key as 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Keyring> {
        let bytes = hex::decode(text.trim()).ok()?;
        let kek: [u8; 32] = bytes.try_into().ok()?;
        Some(Keyring::new(kek))
    }

    pub fn generate() -> Keyring {
        Keyring::new(model::token::random_bytes::<32>())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.kek)
    }

    /// A public identifier of the key (not secret): names it in errors.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.kek).expect("32-byte key")
    }

    /// Encrypt a data key under this key: (nonce, wrapped key).
    fn wrap(&self, dek: &[u8; 32], context: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let dek_nonce = nonce();
        let wrapped = self
            .cipher()
            .encrypt(
                &nonce_of(&dek_nonce),
                Payload {
                    msg: dek,
                    aad: context,
                },
            )
            .expect("encryption does not fail");
        (dek_nonce, wrapped)
    }

    /// Encrypt `plain`, bound to `context` (the channel id).
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let dek = model::token::random_bytes::<32>();
        let (dek_nonce, wrapped) = self.wrap(&dek, context);
        let value_nonce = nonce();
        let value = Aes256Gcm::new_from_slice(&dek)
            .expect("32-byte key")
            .encrypt(
                &nonce_of(&value_nonce),
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .expect("encryption does not fail");
        let mut out = Vec::with_capacity(HEADER_LEN + value.len());
        out.push(VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&dek_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&value_nonce);
        out.extend_from_slice(&value);
        out
    }

    fn unwrap_dek(&self, sealed: &[u8], context: &[u8]) -> Result<[u8; 32], SealError> {
        if sealed.len() < HEADER_LEN || sealed[0] != VERSION {
            return Err(SealError::Malformed);
        }
        if sealed[1..1 + ID_LEN] != self.id {
            return Err(SealError::WrongKey(hex::encode(&sealed[1..1 + ID_LEN])));
        }
        let at = 1 + ID_LEN;
        let dek = self
            .cipher()
            .decrypt(
                &nonce_of(&sealed[at..at + NONCE_LEN]),
                Payload {
                    msg: &sealed[at + NONCE_LEN..at + NONCE_LEN + WRAPPED_LEN],
                    aad: context,
                },
            )
            .map_err(|_| SealError::Tampered)?;
        dek.try_into().map_err(|_| SealError::Malformed)
    }

    /// Decrypt a value sealed with [`Keyring::seal`] for the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        let dek = self.unwrap_dek(sealed, context)?;
        let at = 1 + ID_LEN + NONCE_LEN + WRAPPED_LEN;
        Aes256Gcm::new_from_slice(&dek)
            .expect("32-byte key")
            .decrypt(
                &nonce_of(&sealed[at..at + NONCE_LEN]),
                Payload {
                    msg: &sealed[at + NONCE_LEN..],
                    aad: context,
                },
            )
            .map_err(|_| SealError::Tampered)
    }

    /// Re-wrap a sealed value's data key under `next` (key rotation); the value itself
    /// is not decrypted.
    pub fn rewrap(
        &self,
        sealed: &[u8],
        context: &[u8],
        next: &Keyring,
    ) -> Result<Vec<u8>, SealError> {
        let dek = self.unwrap_dek(sealed, context)?;
        let (dek_nonce, wrapped) = next.wrap(&dek, context);
        let mut out = Vec::with_capacity(sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&next.id);
        out.extend_from_slice(&dek_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&sealed[1 + ID_LEN + NONCE_LEN + WRAPPED_LEN..]);
        Ok(out)
    }

    /// Whether `sealed` is wrapped by this key.
    pub fn wraps(&self, sealed: &[u8]) -> bool {
        sealed.len() >= HEADER_LEN && sealed[1..1 + ID_LEN] == self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_binds_context_and_rewraps() {
        let key = Keyring::generate();
        let secret = b"https://hooks.slack.com/services/T000/B000/XXXXXXXX";
        let sealed = key.seal(secret, b"channel-1");
        assert!(
            !sealed.windows(8).any(|w| w == b"hooks.sl"),
            "plaintext leaked"
        );
        assert_eq!(key.open(&sealed, b"channel-1").unwrap(), secret);
        assert_eq!(key.open(&sealed, b"channel-2"), Err(SealError::Tampered));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(key.open(&flipped, b"channel-1"), Err(SealError::Tampered));
        assert_eq!(
            key.open(&sealed[..10], b"channel-1"),
            Err(SealError::Malformed)
        );
        let next = Keyring::generate();
        assert!(matches!(
            next.open(&sealed, b"channel-1"),
            Err(SealError::WrongKey(_))
        ));
        let rewrapped = key.rewrap(&sealed, b"channel-1", &next).unwrap();
        assert!(next.wraps(&rewrapped) && !key.wraps(&rewrapped));
        assert_eq!(next.open(&rewrapped, b"channel-1").unwrap(), secret);
        // Same value, fresh keys and nonces: two seals differ.
        assert_ne!(key.seal(secret, b"c"), key.seal(secret, b"c"));
        assert_eq!(Keyring::from_hex(&key.to_hex()).unwrap().id(), key.id());
        assert!(Keyring::from_hex("abcd").is_none());
    }
}
