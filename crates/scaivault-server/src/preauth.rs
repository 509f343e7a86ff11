//! The pre-authentication budget: what a client without a valid credential can cost.
//!
//! Each client address (an IPv6 client by its /64, the unit one host is given) has a bucket
//! of failed authentications: a bad, expired or revoked token, a wrong client secret, a wrong
//! unseal key. While its bucket is empty, the address's requests that need a credential
//! checked are refused with `429 rate_limited` before any check is made. Successful requests
//! cost nothing from the bucket, so a busy service is never slowed by it.
//!
//! Failures are audited, but a flood is not written entry by entry: the first
//! [`INDIVIDUAL_PER_WINDOW`] failures of an (address, reason) in a window are recorded as
//! they happen, the rest are counted and written as one `auth_failures` entry per (address,
//! reason) when the window closes. The log stays complete in meaning (every failure is
//! counted) and bounded in size (at most `INDIVIDUAL_PER_WINDOW + 1` entries per address and
//! reason a minute, for at most [`MAX_TRACKED`] addresses; beyond that, one shared entry).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one (address, reason) recorded entry by entry in a window.
pub(crate) const INDIVIDUAL_PER_WINDOW: u32 = 5;
/// How long one aggregation window lasts.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once (buckets and counters); past this, new addresses share one.
pub(crate) const MAX_TRACKED: usize = 16_384;

/// The per-address allowance of failed authentications.
#[derive(Debug, Clone, Copy)]
pub struct PreAuthLimits {
    pub enabled: bool,
    /// Failures an address may make in a burst, refilled at this rate per minute.
    pub failures_per_minute: u32,
}

impl Default for PreAuthLimits {
    fn default() -> Self {
        PreAuthLimits {
            enabled: true,
            failures_per_minute: 30,
        }
    }
}

/// The address a budget belongs to: IPv4 as it is, IPv6 by its /64.
pub(crate) fn address_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Stands for every address once [`MAX_TRACKED`] are tracked.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::new(0xffff, 0, 0, 0, 0, 0, 0, 1));

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Count {
    recorded: u32,
    suppressed: u64,
}

struct Inner {
    buckets: HashMap<IpAddr, Bucket>,
    counts: HashMap<(IpAddr, &'static str), Count>,
    window_started: Instant,
}

/// One aggregated `auth_failures` entry: `count` failures of `reason` from `address` in the
/// window that were not recorded one by one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Aggregate {
    pub address: String,
    pub reason: &'static str,
    pub count: u64,
    pub window_seconds: u64,
}

pub(crate) struct PreAuth {
    limits: PreAuthLimits,
    inner: Mutex<Inner>,
}

/// What to do with a failure just counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// Write its own audit entry.
    Individually,
    /// Counted; the window's `auth_failures` entry will carry it.
    Aggregated,
}

impl PreAuth {
    pub fn new(limits: PreAuthLimits) -> PreAuth {
        PreAuth {
            limits,
            inner: Mutex::new(Inner {
                buckets: HashMap::new(),
                counts: HashMap::new(),
                window_started: Instant::now(),
            }),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.limits.failures_per_minute.max(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds until `ip` may try again, or `None` when it still has failures to spend.
    pub fn blocked(&self, ip: Option<IpAddr>) -> Option<u64> {
        if !self.limits.enabled {
            return None;
        }
        let key = address_key(ip);
        let now = Instant::now();
        let capacity = self.capacity();
        let mut inner = self.lock();
        let key = if inner.buckets.contains_key(&key) {
            key
        } else if inner.buckets.len() >= MAX_TRACKED {
            OVERFLOW
        } else {
            return None;
        };
        let b = inner.buckets.get_mut(&key)?;
        refill(b, now, capacity);
        (b.tokens < 1.0).then(|| ((1.0 - b.tokens) * 60.0 / capacity).ceil().max(1.0) as u64)
    }

    /// Counts a failed authentication from `ip` for `reason` (an error code), spends `cost`
    /// of the address's allowance (0 for what costs the server nothing: a missing token, a
    /// request refused because the address is already over its budget — which must not keep
    /// it there for ever), and says whether it gets an audit entry of its own.
    pub fn failed(&self, ip: Option<IpAddr>, reason: &'static str, cost: u32) -> Record {
        let key = address_key(ip);
        let now = Instant::now();
        let capacity = self.capacity();
        let mut inner = self.lock();
        if self.limits.enabled && cost > 0 {
            if inner.buckets.len() >= MAX_TRACKED && !inner.buckets.contains_key(&key) {
                // Forget the addresses whose allowance is whole again before sharing one.
                inner.buckets.retain(|_, b| {
                    refill(b, now, capacity);
                    b.tokens < capacity
                });
            }
            let bkey = if inner.buckets.len() >= MAX_TRACKED && !inner.buckets.contains_key(&key) {
                OVERFLOW
            } else {
                key
            };
            let b = inner.buckets.entry(bkey).or_insert(Bucket {
                tokens: capacity,
                last: now,
            });
            refill(b, now, capacity);
            b.tokens = (b.tokens - f64::from(cost)).max(0.0);
        }
        let ckey =
            if inner.counts.len() >= MAX_TRACKED && !inner.counts.contains_key(&(key, reason)) {
                (OVERFLOW, reason)
            } else {
                (key, reason)
            };
        let c = inner.counts.entry(ckey).or_default();
        if c.recorded < INDIVIDUAL_PER_WINDOW {
            c.recorded += 1;
            Record::Individually
        } else {
            c.suppressed += 1;
            Record::Aggregated
        }
    }

    /// Closes the window if it has lasted [`WINDOW`] (or `force`): returns the failures that
    /// were counted but not recorded, and starts a new window.
    pub fn drain(&self, force: bool) -> Vec<Aggregate> {
        let now = Instant::now();
        let mut inner = self.lock();
        let lasted = now.duration_since(inner.window_started);
        if !force && lasted < WINDOW {
            return Vec::new();
        }
        inner.window_started = now;
        let counts = std::mem::take(&mut inner.counts);
        let capacity = self.capacity();
        inner.buckets.retain(|_, b| {
            refill(b, now, capacity);
            b.tokens < capacity
        });
        let mut out: Vec<Aggregate> = counts
            .into_iter()
            .filter(|(_, c)| c.suppressed > 0)
            .map(|((ip, reason), c)| Aggregate {
                address: if ip == OVERFLOW {
                    "other addresses".to_owned()
                } else {
                    ip.to_string()
                },
                reason,
                count: c.suppressed,
                window_seconds: lasted.as_secs().max(1),
            })
            .collect();
        out.sort_by(|a, b| (&a.address, a.reason).cmp(&(&b.address, b.reason)));
        out
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.buckets.len(), inner.counts.len())
    }
}

fn refill(b: &mut Bucket, now: Instant, capacity: f64) {
    let per_sec = capacity / 60.0;
    b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(capacity);
    b.last = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_address_is_blocked_once_its_failures_are_spent_and_others_are_not() {
        let p = PreAuth::new(PreAuthLimits {
            enabled: true,
            failures_per_minute: 3,
        });
        for _ in 0..3 {
            assert_eq!(p.blocked(ip("10.0.0.1")), None);
            p.failed(ip("10.0.0.1"), "token_invalid", 1);
        }
        let wait = p.blocked(ip("10.0.0.1")).expect("blocked after 3 failures");
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(p.blocked(ip("10.0.0.2")), None);
        // Refusals while blocked and missing tokens are counted for the audit log but cost
        // nothing, so an allowance refills even while a client keeps retrying.
        for _ in 0..100 {
            assert_eq!(p.blocked(ip("10.0.0.3")), None);
            p.failed(ip("10.0.0.3"), "authentication_required", 0);
        }
    }

    #[test]
    fn a_costly_failure_spends_more() {
        let p = PreAuth::new(PreAuthLimits {
            enabled: true,
            failures_per_minute: 30,
        });
        for _ in 0..5 {
            assert_eq!(p.blocked(ip("10.0.0.5")), None);
            p.failed(ip("10.0.0.5"), "invalid_passphrase", 6);
        }
        assert!(
            p.blocked(ip("10.0.0.5")).is_some(),
            "five wrong unseal keys a minute"
        );
    }

    #[test]
    fn ipv6_clients_are_budgeted_by_their_64() {
        let p = PreAuth::new(PreAuthLimits {
            enabled: true,
            failures_per_minute: 2,
        });
        p.failed(ip("2001:db8:1:2::1"), "token_invalid", 1);
        p.failed(ip("2001:db8:1:2:ffff::9"), "token_invalid", 1);
        assert!(p.blocked(ip("2001:db8:1:2::77")).is_some());
        assert_eq!(p.blocked(ip("2001:db8:1:3::1")), None);
        // An IPv4 client seen through a dual-stack socket is the IPv4 address.
        assert_eq!(
            address_key(ip("::ffff:10.1.2.3")),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_flood_is_recorded_as_a_few_entries_and_one_count() {
        let p = PreAuth::new(PreAuthLimits {
            enabled: true,
            failures_per_minute: 1_000_000,
        });
        let records: Vec<Record> = (0..1000)
            .map(|_| p.failed(ip("10.0.0.9"), "token_invalid", 1))
            .collect();
        let individual = records
            .iter()
            .filter(|r| **r == Record::Individually)
            .count();
        assert_eq!(individual, INDIVIDUAL_PER_WINDOW as usize);
        assert!(p.drain(false).is_empty(), "the window is still open");
        let agg = p.drain(true);
        assert_eq!(agg.len(), 1);
        assert_eq!(agg[0].address, "10.0.0.9");
        assert_eq!(agg[0].reason, "token_invalid");
        assert_eq!(agg[0].count, 1000 - u64::from(INDIVIDUAL_PER_WINDOW));
        // A new window records individually again.
        assert_eq!(
            p.failed(ip("10.0.0.9"), "token_invalid", 1),
            Record::Individually
        );
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_addresses() {
        let p = PreAuth::new(PreAuthLimits {
            enabled: true,
            failures_per_minute: 1,
        });
        for i in 0..(MAX_TRACKED as u32 + 5000) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            p.failed(Some(IpAddr::V4(a)), "token_invalid", 1);
        }
        let (buckets, counts) = p.tracked();
        assert!(buckets <= MAX_TRACKED + 1, "{buckets}");
        assert!(counts <= MAX_TRACKED + 1, "{counts}");
        // Past the bound, new addresses share one allowance, which is spent.
        assert!(p.blocked(ip("11.0.0.1")).is_some());
        let agg = p.drain(true);
        assert!(agg.iter().any(|a| a.address == "other addresses"));
    }
}
