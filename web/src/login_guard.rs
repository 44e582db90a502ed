//! Login throttling per account and per source address, with growing delay.
//!
//! After [`FREE_FAILURES`] failures for an account name (or
//! [`FREE_FAILURES_PER_ADDRESS`] from one source address, more since many people may
//! share one address) the key is locked for 1 s, then 2 s, 4 s, ... up to
//! [`MAX_LOCK`]. The same rule applies to names that
//! do not exist, so the throttle reveals nothing about which accounts exist. State is
//! per process (a replica restart forgets it); the lock-out is a brake on guessing,
//! the password hash cost is the wall.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Longest username accepted at login (bytes); longer is a 400, never stored.
pub const MAX_USERNAME_BYTES: usize = 256;
/// How long a login waits for a password-hashing slot before a 429.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

pub const FREE_FAILURES: u32 = 5;
pub const FREE_FAILURES_PER_ADDRESS: u32 = 20;
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

/// Throttle state and the password-hashing slots (about one per core: each argon2
/// verification takes ~19 MiB and a core for a while).
#[derive(Debug)]
pub struct LoginGuard {
    keys: Mutex<HashMap<String, Failures>>,
    hashing: Semaphore,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LoginGuard {
            keys: Mutex::default(),
            hashing: Semaphore::new(cores),
        }
    }
}

fn lock_for(count: u32, free: u32) -> Option<Duration> {
    (count >= free).then(|| {
        let exp = (count - free).min(20);
        Duration::from_secs(1u64 << exp).min(MAX_LOCK)
    })
}

impl LoginGuard {
    fn keys(username: &str, addr: Option<&str>) -> Vec<String> {
        let mut keys = vec![format!("user:{}", username.to_lowercase())];
        if let Some(addr) = addr {
            keys.push(format!("addr:{addr}"));
        }
        keys
    }

    /// `Err(wait)` when the account or the address is locked at `now`.
    pub fn check(&self, username: &str, addr: Option<&str>, now: Instant) -> Result<(), Duration> {
        let map = self.keys.lock().expect("login guard poisoned");
        Self::wait(&map, username, addr, now)
    }

    fn wait(
        map: &HashMap<String, Failures>,
        username: &str,
        addr: Option<&str>,
        now: Instant,
    ) -> Result<(), Duration> {
        let wait = Self::keys(username, addr)
            .iter()
            .filter_map(|k| map.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    pub fn failure(&self, username: &str, addr: Option<&str>, now: Instant) {
        let mut map = self.keys.lock().expect("login guard poisoned");
        Self::count(&mut map, username, addr, now);
    }

    fn count(
        map: &mut HashMap<String, Failures>,
        username: &str,
        addr: Option<&str>,
        now: Instant,
    ) {
        if map.len() > MAX_KEYS {
            map.retain(|_, f| now.duration_since(f.last) < MAX_LOCK);
        }
        for key in Self::keys(username, addr) {
            let entry = map.entry(key.clone()).or_insert(Failures {
                count: 0,
                locked_until: None,
                last: now,
            });
            entry.count += 1;
            entry.last = now;
            let free = if key.starts_with("addr:") {
                FREE_FAILURES_PER_ADDRESS
            } else {
                FREE_FAILURES
            };
            entry.locked_until = lock_for(entry.count, free).map(|d| now + d);
        }
    }

    /// Check and count an attempt under one lock, before the password is verified: the
    /// attempt counts as a failure until [`Self::success`] says otherwise, so
    /// concurrent guesses cannot all pass the check before any failure is recorded.
    pub fn reserve(
        &self,
        username: &str,
        addr: Option<&str>,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut map = self.keys.lock().expect("login guard poisoned");
        Self::wait(&map, username, addr, now)?;
        Self::count(&mut map, username, addr, now);
        Ok(())
    }

    /// A password-hashing slot; `None` when every slot stayed busy for [`HASH_WAIT`].
    pub async fn hashing_slot(&self) -> Option<SemaphorePermit<'_>> {
        tokio::time::timeout(HASH_WAIT, self.hashing.acquire())
            .await
            .ok()?
            .ok()
    }

    /// A successful login clears the account's failures and takes back the address's
    /// reserved attempt.
    pub fn success(&self, username: &str, addr: Option<&str>) {
        let mut map = self.keys.lock().expect("login guard poisoned");
        map.remove(&format!("user:{}", username.to_lowercase()));
        if let Some(addr) = addr
            && let Some(entry) = map.get_mut(&format!("addr:{addr}"))
        {
            entry.count = entry.count.saturating_sub(1);
            entry.locked_until =
                lock_for(entry.count, FREE_FAILURES_PER_ADDRESS).map(|d| entry.last + d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_after_free_failures_and_success_resets() {
        let guard = LoginGuard::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            guard.failure("alice", Some("10.0.0.1"), t0);
            assert!(guard.check("alice", Some("10.0.0.9"), t0).is_ok());
        }
        guard.failure("alice", Some("10.0.0.1"), t0);
        assert_eq!(
            guard.check("alice", Some("10.0.0.9"), t0).unwrap_err(),
            Duration::from_secs(1)
        );
        // Another account from the same address is not locked yet ...
        assert!(guard.check("nobody", Some("10.0.0.1"), t0).is_ok());
        for i in 0..FREE_FAILURES_PER_ADDRESS {
            guard.failure(&format!("guess{i}"), Some("10.0.0.1"), t0);
        }
        // ... until the address itself has too many failures, whatever the account.
        assert!(guard.check("nobody", Some("10.0.0.1"), t0).is_err());
        let t1 = t0 + Duration::from_secs(2);
        assert!(guard.check("alice", None, t1).is_ok());
        guard.failure("alice", None, t1);
        assert_eq!(
            guard.check("alice", None, t1).unwrap_err(),
            Duration::from_secs(2)
        );
        guard.success("alice", None);
        assert!(guard.check("alice", None, t1).is_ok());
        // A reservation counts before the verification finishes.
        let guard = LoginGuard::default();
        for _ in 0..FREE_FAILURES {
            assert!(guard.reserve("bob", None, t0).is_ok());
        }
        assert!(guard.reserve("bob", None, t0).is_err());
        // Reservations from many threads at once: exactly the free attempts pass.
        let guard = std::sync::Arc::new(LoginGuard::default());
        let passed: usize = (0..8)
            .map(|_| {
                let guard = guard.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| guard.reserve("carol", None, t0).is_ok())
                        .count()
                })
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(passed, FREE_FAILURES as usize);
        assert_eq!(lock_for(100, FREE_FAILURES), Some(MAX_LOCK));
    }
}
