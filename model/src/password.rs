//! Password hashing with argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB (19 MiB), iterations and lanes, per the OWASP cheat sheet.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash(password: &str) -> String {
    let salt = crate::token::random_bytes::<16>();
    hasher()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid params cannot fail")
        .to_string()
}

/// Check a password against a stored PHC string. A malformed hash never verifies.
pub fn verify(password: &str, phc: &str) -> bool {
    hasher().verify_password(password.as_bytes(), phc).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_parameters() {
        let phc = hash("correct horse");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong horse", &phc));
        assert!(!verify("correct horse", "not-a-hash"));
        assert_ne!(hash("correct horse"), phc, "salts differ");
    }
}
