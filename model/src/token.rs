//! API token format, generation and keyed hashing.
//!
//! Format: `pal_<22 base62 chars: 128 random bits>_<6 base62 chars: checksum>`.
//! The prefix makes a leaked token recognisable by secret scanners; the checksum
//! (first 32 bits of SHA-256 over `pal_<random>`) lets anyone verify offline that a
//! string is a well-formed Palisade token without a database. Only an HMAC-SHA256 of
//! the whole token under the server's token key is ever stored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const PREFIX: &str = "pal_";
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 22; // 62^22 > 2^128
const CHECKSUM_LEN: usize = 6; // 62^6 > 2^32

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("operating system random source failed");
    buf
}

fn base62_fixed(mut value: u128, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).expect("alphabet is ascii")
}

fn checksum(head: &str) -> String {
    let digest = Sha256::digest(head.as_bytes());
    let value = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    base62_fixed(u128::from(value), CHECKSUM_LEN)
}

/// Mint a new token string. Show it once; store only [`TokenKey::hash`] of it.
pub fn generate() -> String {
    let random = u128::from_be_bytes(random_bytes::<16>());
    let head = format!("{PREFIX}{}", base62_fixed(random, RANDOM_LEN));
    let sum = checksum(&head);
    format!("{head}_{sum}")
}

/// Whether `token` has the Palisade token shape and a valid checksum.
pub fn is_well_formed(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((random, sum)) = rest.split_once('_') else {
        return false;
    };
    if random.len() != RANDOM_LEN
        || sum.len() != CHECKSUM_LEN
        || !random
            .bytes()
            .chain(sum.bytes())
            .all(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    checksum(&token[..PREFIX.len() + RANDOM_LEN]) == sum
}

/// A random password of `len` base62 characters (for the initial admin).
pub fn random_password(len: usize) -> String {
    let bytes = random_bytes::<64>();
    bytes
        .iter()
        .filter(|b| (**b as usize) < 248) // 248 = 4*62, keeps the choice unbiased
        .take(len)
        .map(|b| ALPHABET[(*b as usize) % 62] as char)
        .collect()
}

/// The server-side key under which tokens are hashed.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        TokenKey(bytes)
    }

    pub fn generate() -> Self {
        TokenKey(random_bytes::<32>())
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(TokenKey(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Keyed hash of a token, hex-encoded; this is what the database stores.
    pub fn hash(&self, token: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with("pal_"));
        assert_eq!(a.len(), 4 + 22 + 1 + 6);
        assert!(is_well_formed(&a), "{a}");
    }

    #[test]
    fn checksum_detects_typos() {
        let token = generate();
        let mut chars: Vec<char> = token.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(!is_well_formed(&typo));
        assert!(!is_well_formed("pal_short_abc"));
        assert!(!is_well_formed("Bearer xyz"));
    }

    #[test]
    fn keyed_hash_depends_on_key() {
        let token = generate();
        let k1 = TokenKey::generate();
        let k2 = TokenKey::generate();
        assert_eq!(k1.hash(&token), k1.hash(&token));
        assert_ne!(k1.hash(&token), k2.hash(&token));
        assert_eq!(
            TokenKey::from_hex(&k1.to_hex()).unwrap().hash(&token),
            k1.hash(&token)
        );
        assert!(!format!("{k1:?}").contains(&k1.to_hex()));
    }

    #[test]
    fn passwords_have_requested_length() {
        let p = random_password(24);
        assert_eq!(p.len(), 24);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
