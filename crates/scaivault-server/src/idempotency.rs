//! `Idempotency-Key` on `PUT /v1/secrets/{path}`: a write sent again with the same key (a
//! client retrying after a lost answer) gets the first write's answer instead of writing a
//! second version. An extension of the reference, as Stripe's API has it.
//!
//! Keys are per identity, remembered by this server process for [`KEEP`], at most
//! [`PER_IDENTITY`] per identity (an identity's oldest go first, so no caller can push out
//! another's keys) and [`CAPACITY`] in all (then the oldest of the identity holding the most
//! go); a restart forgets them, so a retry that spans a restart writes again (`cas` is the
//! durable guard). The same key with another path or
//! body is refused rather than answered with the other request's result. A request still
//! running when its repeat arrives makes the repeat wait for it. A failed write is not
//! remembered: its retry runs again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scaivault_core::Error;
use scaivault_core::time::Timestamp;
use scaivault_engine::{WriteOutcome, WriteRequest};
use zeroize::Zeroizing;

/// How long a key is remembered.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How many keys one identity may have remembered at once.
pub const PER_IDENTITY: usize = 1_000;
/// How many keys are remembered at once in all.
pub const CAPACITY: usize = 100_000;
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

type Id = [u8; 32];

struct Slot {
    fingerprint: [u8; 32],
    at: Timestamp,
    outcome: tokio::sync::OnceCell<WriteOutcome>,
}

pub struct Idempotency {
    /// Keys the fingerprints, so what is kept in memory reveals nothing of a request's values.
    mac_key: Zeroizing<[u8; 32]>,
    slots: Mutex<Slots>,
}

/// The remembered keys, per identity, each identity's in their order of arrival (the oldest
/// are forgotten first).
#[derive(Default)]
struct Slots {
    by_identity: HashMap<String, Remembered>,
    total: usize,
}

#[derive(Default)]
struct Remembered {
    by_id: HashMap<Id, Arc<Slot>>,
    order: VecDeque<(Id, Timestamp)>,
}

impl Remembered {
    /// Forgets the oldest key; false when there is none.
    fn forget_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((old, at)) => {
                if self.by_id.get(&old).is_some_and(|s| s.at == at) {
                    self.by_id.remove(&old);
                }
                true
            }
            None => false,
        }
    }
}

/// Whether a write ran or was answered from an earlier one.
pub enum Answer {
    Wrote(WriteOutcome),
    Replayed(WriteOutcome),
}

impl Default for Idempotency {
    fn default() -> Self {
        Idempotency {
            mac_key: Zeroizing::new(scaivault_crypto::random_bytes()),
            slots: Mutex::default(),
        }
    }
}

/// The key as sent, if it is one: 1 to 255 visible ASCII characters.
pub fn parse_key(raw: &[u8]) -> Result<&str, Error> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_KEY_LEN
        && raw.iter().all(|b| (0x21..=0x7e).contains(b));
    if !ok {
        return Err(Error::invalid_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters (a UUID, say)"
        )));
    }
    Ok(std::str::from_utf8(raw).unwrap_or_default())
}

impl Idempotency {
    /// What identifies a request's path and body, keyed so that it reveals nothing of them.
    pub fn fingerprint(&self, path: &str, req: &WriteRequest) -> [u8; 32] {
        let body = Zeroizing::new(serde_json::to_vec(req).unwrap_or_default());
        let mut msg = Zeroizing::new(Vec::with_capacity(path.len() + 1 + body.len()));
        msg.extend_from_slice(path.as_bytes());
        msg.push(0);
        msg.extend_from_slice(&body);
        scaivault_crypto::hmac_sha256(&*self.mac_key, &msg)
    }

    /// Runs `write` unless this identity sent `key` with the same [`Self::fingerprint`]
    /// before (then answers what that write answered).
    pub async fn write<F, Fut>(
        &self,
        identity: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: Timestamp,
        write: F,
    ) -> Result<Answer, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<WriteOutcome, Error>>,
    {
        let id = scaivault_crypto::sha256(format!("{identity}\0{key}").as_bytes());
        let slot = self.slot(identity, id, fingerprint, now)?;
        let mut ran = false;
        let outcome = slot
            .outcome
            .get_or_try_init(|| {
                ran = true;
                write()
            })
            .await?
            .clone();
        Ok(if ran {
            Answer::Wrote(outcome)
        } else {
            Answer::Replayed(outcome)
        })
    }

    fn slot(
        &self,
        identity: &str,
        id: Id,
        fingerprint: [u8; 32],
        now: Timestamp,
    ) -> Result<Arc<Slot>, Error> {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slots = &mut *guard;
        let horizon = now.minus(KEEP);
        let mine = slots.by_identity.entry(identity.to_owned()).or_default();
        let before = mine.by_id.len();
        // Expired keys go; a new key makes room for itself among the identity's own.
        let adding = !mine.by_id.contains_key(&id);
        while mine
            .order
            .front()
            .is_some_and(|&(_, at)| at <= horizon || (adding && mine.by_id.len() >= PER_IDENTITY))
        {
            mine.forget_oldest();
        }
        if let Some(slot) = mine.by_id.get(&id) {
            let slot = slot.clone();
            slots.total = slots.total + mine.by_id.len() - before;
            if !scaivault_crypto::constant_time_eq(&slot.fingerprint, &fingerprint) {
                return Err(Error::invalid_request(
                    "this Idempotency-Key was used for a different request (another path or body); use a new key for a new write",
                ));
            }
            return Ok(slot);
        }
        let slot = Arc::new(Slot {
            fingerprint,
            at: now,
            outcome: tokio::sync::OnceCell::new(),
        });
        mine.by_id.insert(id, slot.clone());
        mine.order.push_back((id, now));
        slots.total = slots.total + mine.by_id.len() - before;
        // Over the total: the identity holding the most gives up its oldest.
        while slots.total > CAPACITY {
            let Some(heaviest) = slots.by_identity.values_mut().max_by_key(|r| r.by_id.len())
            else {
                break;
            };
            let n = heaviest.by_id.len();
            if !heaviest.forget_oldest() {
                break;
            }
            slots.total -= n - heaviest.by_id.len();
        }
        slots.by_identity.retain(|_, r| !r.by_id.is_empty());
        Ok(slot)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let slots = self.slots.lock().unwrap();
        let counted: usize = slots.by_identity.values().map(|r| r.by_id.len()).sum();
        assert_eq!(counted, slots.total, "the running total agrees");
        counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaivault_core::ErrorCode;

    fn fp(idem: &Idempotency, path: &str, v: &str) -> [u8; 32] {
        let req: WriteRequest =
            serde_json::from_value(serde_json::json!({"data": {"k": v}})).unwrap();
        idem.fingerprint(path, &req)
    }

    fn outcome(version: u64) -> WriteOutcome {
        serde_json::from_value(serde_json::json!({
            "path": "a/b", "version": version, "secret_type": "kv", "created": version == 1,
            "created_at": "2026-12-03T00:00:00Z", "updated_at": "2026-12-03T00:00:00Z"
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_repeat_is_answered_once_and_a_changed_request_is_refused() {
        let idem = Idempotency::default();
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        let mut writes = 0;
        for _ in 0..3 {
            let answer = idem
                .write("sa:a", "k1", fp(&idem, "a/b", "v"), now, || {
                    writes += 1;
                    async { Ok(outcome(1)) }
                })
                .await
                .unwrap();
            assert_eq!(
                match answer {
                    Answer::Wrote(o) | Answer::Replayed(o) => o.version,
                },
                1
            );
        }
        assert_eq!(writes, 1);
        // Another identity's same key is its own.
        let other = idem
            .write("sa:b", "k1", fp(&idem, "a/b", "v"), now, || async {
                Ok(outcome(2))
            })
            .await
            .unwrap();
        assert!(matches!(other, Answer::Wrote(_)));
        // The same key for another body or path is refused, and writes nothing.
        for (path, value) in [("a/b", "w"), ("a/c", "v")] {
            let err = idem
                .write("sa:a", "k1", fp(&idem, path, value), now, || async {
                    panic!("wrote")
                })
                .await
                .err()
                .unwrap();
            assert_eq!(err.code, ErrorCode::InvalidRequest);
        }
        // A failed write is not remembered: its retry runs.
        let failed = idem
            .write("sa:a", "k2", fp(&idem, "a/b", "v"), now, || async {
                Err(Error::invalid_request("no"))
            })
            .await;
        assert!(failed.is_err());
        let retried = idem
            .write("sa:a", "k2", fp(&idem, "a/b", "v"), now, || async {
                Ok(outcome(3))
            })
            .await
            .unwrap();
        assert!(matches!(retried, Answer::Wrote(o) if o.version == 3));
        // After KEEP the key is forgotten.
        let later = now.plus(KEEP + Duration::from_secs(1));
        let again = idem
            .write("sa:a", "k1", fp(&idem, "a/b", "v"), later, || async {
                Ok(outcome(4))
            })
            .await
            .unwrap();
        assert!(matches!(again, Answer::Wrote(o) if o.version == 4));
        assert!(idem.len() <= 2, "expired keys are dropped");
    }

    #[tokio::test]
    async fn one_identity_cannot_push_out_anothers_keys() {
        let idem = Idempotency::default();
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        let mine = fp(&idem, "a/b", "v");
        idem.write("sa:alice", "keep", mine, now, || async { Ok(outcome(1)) })
            .await
            .unwrap();
        for i in 0..PER_IDENTITY + 50 {
            idem.write(
                "sa:bob",
                &format!("k{i}"),
                fp(&idem, "b/c", "v"),
                now,
                || async { Ok(outcome(1)) },
            )
            .await
            .unwrap();
        }
        assert_eq!(
            idem.len(),
            PER_IDENTITY + 1,
            "bob keeps his newest, alice hers"
        );
        // A replay at the cap makes no room: bob's oldest kept key is still there.
        for _ in 0..3 {
            let again = idem
                .write("sa:bob", "k1049", fp(&idem, "b/c", "v"), now, || async {
                    Ok(outcome(9))
                })
                .await
                .unwrap();
            assert!(matches!(again, Answer::Replayed(_)));
        }
        let kept = idem
            .write("sa:bob", "k50", fp(&idem, "b/c", "v"), now, || async {
                Ok(outcome(9))
            })
            .await
            .unwrap();
        assert!(
            matches!(kept, Answer::Replayed(_)),
            "a replay pushed out k50"
        );
        let again = idem
            .write("sa:alice", "keep", mine, now, || async { Ok(outcome(2)) })
            .await
            .unwrap();
        assert!(matches!(again, Answer::Replayed(o) if o.version == 1));
    }

    #[test]
    fn keys_are_bounded_and_visible_ascii() {
        assert!(parse_key(b"7f0c2c9e-4d1b-4a39-9a43-5b0e2a3f8c11").is_ok());
        for bad in [
            &b""[..],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
            &[b'a'; 256],
        ] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }
}
