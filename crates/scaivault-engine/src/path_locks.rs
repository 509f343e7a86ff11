//! One lock per secret path, taken only by the work that must not run twice at once on the
//! same secret (creating and driving its rotation job). Work on different secrets runs side
//! by side: a backend that takes its full timeout on one secret holds up no other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Slot = Arc<tokio::sync::Mutex<()>>;

/// Locks keyed by path; an entry lives only while someone holds or waits for it.
#[derive(Default)]
pub(crate) struct PathLocks {
    held: Mutex<HashMap<String, Slot>>,
}

/// The turn on one path; dropping it lets the next waiter in.
pub(crate) struct PathGuard<'a> {
    locks: &'a PathLocks,
    path: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl PathLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the turn on `path` (first come, first served).
    pub(crate) async fn lock(&self, path: &str) -> PathGuard<'_> {
        let slot = self.map().entry(path.to_owned()).or_default().clone();
        let guard = slot.lock_owned().await;
        PathGuard {
            locks: self,
            path: path.to_owned(),
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for PathGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // Only the map holds the slot: nobody waits for it, so it goes (the map stays as
        // large as the paths in use, not every path ever rotated). Waiters hold a clone, and
        // a new one can only take it under the map's lock, held here.
        if map
            .get(&self.path)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_path_waits_for_its_turn_and_others_do_not() {
        let locks = Arc::new(PathLocks::default());
        let a = locks.lock("a").await;
        // Another path is free at once.
        let b = locks.lock("b").await;
        drop(b);
        // The same path waits until the first holder lets go.
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0, "a slot nobody holds is removed");
    }
}
