//! Token buckets per (identity, category), held in memory (spec §1.11).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per minute for each category. `multiplier` scales them all (dev mode is generous);
/// `enabled: false` turns limiting off (benchmarks).
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub enabled: bool,
    pub multiplier: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            multiplier: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Category {
    Read,
    Write,
    Delete,
    List,
    Batch,
    Policy,
    PolicyTest,
    Auth,
    Audit,
    Admin,
    /// Tokens minted by the client-credentials grant, per client id.
    Grant,
    /// Secrets written by batch writes, counted per secret (a batch request also counts once
    /// in `Batch`): what one identity can make the single writer do in bulk.
    BulkWrite,
    /// Creating, reading, changing, deleting subscriptions.
    Subscription,
    /// Polling and acknowledging (one long-poll is one unit).
    SubscriptionPoll,
    Public,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Read => "read",
            Category::Write => "write",
            Category::Delete => "delete",
            Category::List => "list",
            Category::Batch => "batch",
            Category::Policy => "policy",
            Category::PolicyTest => "policy_test",
            Category::Auth => "auth",
            Category::Audit => "audit",
            Category::Admin => "admin",
            Category::Grant => "grant",
            Category::BulkWrite => "bulk_write",
            Category::Subscription => "subscription",
            Category::SubscriptionPoll => "subscription_poll",
            Category::Public => "public",
        }
    }

    /// The managed service's defaults, per minute.
    fn per_minute(self) -> f64 {
        match self {
            Category::Read => 1000.0,
            Category::Write
            | Category::Delete
            | Category::List
            | Category::Batch
            | Category::Admin => 100.0,
            Category::Policy | Category::Audit => 50.0,
            Category::PolicyTest => 200.0,
            Category::Auth => 300.0,
            Category::Grant => 30.0,
            Category::BulkWrite => 10_000.0,
            Category::Subscription => 20.0,
            Category::SubscriptionPoll => 240.0,
            Category::Public => f64::INFINITY,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub(crate) struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(String, Category), Bucket>>,
}

pub(crate) struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until a token is available (for `Retry-After`) or the bucket is full.
    pub retry_after: u64,
    pub reset_in: u64,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, identity: &str, category: Category) -> Option<Verdict> {
        self.take(identity, category, 1.0)
    }

    /// Takes `n` units from the identity's bucket. A request larger than the whole bucket is
    /// let through only when the bucket is full, and leaves it that much in debt (its next
    /// request waits the longer), so no size is refused for ever.
    pub fn take(&self, identity: &str, category: Category, n: f64) -> Option<Verdict> {
        if !self.limits.enabled || category == Category::Public {
            return None;
        }
        let capacity = (category.per_minute() * self.limits.multiplier).max(1.0);
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets
            .entry((identity.to_owned(), category))
            .or_insert(Bucket {
                tokens: capacity,
                last: now,
            });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(capacity);
        b.last = now;
        let allowed = b.tokens >= n.min(capacity);
        if allowed {
            b.tokens -= n;
        }
        Some(Verdict {
            allowed,
            limit: capacity as u64,
            remaining: b.tokens.max(0.0) as u64,
            retry_after: if allowed {
                0
            } else {
                ((n.min(capacity) - b.tokens) / per_sec).ceil().max(1.0) as u64
            },
            reset_in: ((capacity - b.tokens) / per_sec).ceil() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_says_when_to_retry() {
        let l = RateLimiter::new(RateLimits {
            enabled: true,
            multiplier: 0.01,
        });
        // 50/min × 0.01 → capacity 1 (floored at 1): one allowed, then refused.
        assert!(l.check("sa:x", Category::Policy).unwrap().allowed);
        let v = l.check("sa:x", Category::Policy).unwrap();
        assert!(!v.allowed);
        assert!(v.retry_after >= 1);
        assert!(
            l.check("sa:y", Category::Policy).unwrap().allowed,
            "buckets are per identity"
        );
        assert!(
            RateLimiter::new(RateLimits {
                enabled: false,
                multiplier: 1.0
            })
            .check("a", Category::Read)
            .is_none()
        );
    }

    #[test]
    fn a_bulk_request_is_charged_per_item() {
        let l = RateLimiter::new(RateLimits {
            enabled: true,
            multiplier: 0.1,
        });
        // 10,000/min × 0.1 → 1,000 secrets a minute.
        assert!(l.take("sa:x", Category::BulkWrite, 600.0).unwrap().allowed);
        let v = l.take("sa:x", Category::BulkWrite, 600.0).unwrap();
        assert!(!v.allowed, "only 400 left");
        assert!(v.retry_after >= 12, "{}", v.retry_after);
        // Larger than the whole bucket: through once it is full, then in debt.
        assert!(l.take("sa:y", Category::BulkWrite, 1500.0).unwrap().allowed);
        assert!(!l.take("sa:y", Category::BulkWrite, 1.0).unwrap().allowed);
    }
}
