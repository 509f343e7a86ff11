//! Process hardening, applied before any key is in memory: no core dumps, not dumpable (no
//! ptrace attach by other users, no /proc/PID/mem reads), and memory locked where the system
//! allows it, so keys never reach swap.

/// Returns a warning to show when memory could not be locked.
pub fn apply() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
        let _ = nix::sys::prctl::set_dumpable(false);
        // Locking all future allocations with a finite RLIMIT_MEMLOCK would make allocations
        // fail once the limit is reached, so lock only when the limit is unlimited.
        match getrlimit(Resource::RLIMIT_MEMLOCK) {
            Ok((soft, _)) if soft == nix::sys::resource::RLIM_INFINITY => {
                use nix::sys::mman::{MlockAllFlags, mlockall};
                match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
                    Ok(()) => None,
                    Err(e) => Some(format!("memory could not be locked ({e}); keys may be swapped out")),
                }
            }
            _ => Some(
                "memory is not locked: RLIMIT_MEMLOCK is finite (set LimitMEMLOCK=infinity in the systemd unit, or run with CAP_IPC_LOCK and ulimit -l unlimited); keys may be swapped out"
                    .into(),
            ),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Some("process hardening (no core dumps, memory locking) is only applied on Linux".into())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn core_dumps_are_off_after_apply() {
        let _ = super::apply();
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!(soft, 0);
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
