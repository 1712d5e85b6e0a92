//! Giving freed heap back to the system after a burst.
//!
//! glibc keeps memory a thread freed in that thread's arena for the next allocation; only the
//! top of an arena is returned by itself. After a burst — a compile of millions of names at
//! start-up, the query log's writer catching up on a backlog of hundreds of thousands of
//! events — that left tens of MB resident for the life of the server, free but never used
//! again (65 MiB after 24 s of saturated load at 100k names and the replay that followed,
//! `benches/README.md`).
//! `malloc_trim` hands the free pages of every arena back; it briefly locks each arena, so it
//! is called after bursts, never per query.

/// Returns the heap's free pages to the system (glibc on Linux; elsewhere nothing).
pub fn give_back_freed() {
    // SAFETY: `malloc_trim` only returns free pages of glibc's own arenas to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}
