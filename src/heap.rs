//! The heap's memory: freed heap given back to the system after a burst, and huge pages for
//! a big table on the DNS path ([`HugePages`]).
//!
//! glibc keeps memory a thread freed in that thread's arena for the next allocation; only the
//! top of an arena is returned by itself. After a burst — a compile of millions of names at
//! start-up, the query log's writer catching up on a backlog of hundreds of thousands of
//! events — that left tens of MB resident for the life of the server, free but never used
//! again (65 MiB after 24 s of saturated load at 100k names and the replay that followed,
//! `benches/README.md`).
//! `malloc_trim` hands the free pages of every arena back; it briefly locks each arena, so it
//! is called after bursts, never per query.

use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};

/// Returns the heap's free pages to the system (glibc on Linux; elsewhere nothing).
pub fn give_back_freed() {
    // SAFETY: `malloc_trim` only returns free pages of glibc's own arenas to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The size of a transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// An allocator for a big table probed at random on the DNS path (the replay memo's shards).
///
/// A probe of such a table lands on a different 4-KiB page almost every time, so its address
/// misses the TLB as well as the cache: two walks through memory, the second inside a VM's
/// nested page tables. An allocation of a huge page or more is here its own anonymous mapping,
/// aligned to 2 MiB and advised for transparent huge pages (`MADV_HUGEPAGE`, which the stock
/// `madvise` setting honours), so one TLB entry covers 512 times as much of the table. Smaller
/// ones go to the global allocator. Where the kernel gives no huge page (THP `never`, no free
/// 2-MiB block) the mapping is ordinary memory and works the same.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

impl HugePages {
    /// Whether a block of `layout` is a mapping of its own (else the global allocator's).
    fn mapped(layout: Layout) -> bool {
        layout.size() >= HUGE_PAGE && layout.align() <= HUGE_PAGE
    }
}

// SAFETY: a mapped block is `len` bytes (the size rounded up to whole huge pages) from a
// 2-MiB-aligned address, readable and writable, owned by no one else until `deallocate`
// unmaps the same `len` from it; a mapping's memory stays put when the value is moved.
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !Self::mapped(layout) {
            return Global.allocate(layout);
        }
        let len = layout.size().next_multiple_of(HUGE_PAGE);
        // One huge page more than needed, so that an aligned start lies inside; the ends
        // before and after it are unmapped at once.
        let span = len + HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping, touching no existing memory.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let head = (start as usize).next_multiple_of(HUGE_PAGE) - start as usize;
        let tail = span - head - len;
        let aligned = start.cast::<u8>().wrapping_add(head);
        // SAFETY: both ends lie inside the mapping just made and outside the part kept; the
        // advice changes how the kept part is backed, not what it holds.
        unsafe {
            if head > 0 {
                libc::munmap(start, head);
            }
            if tail > 0 {
                libc::munmap(aligned.wrapping_add(len).cast(), tail);
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            libc::madvise(aligned.cast(), len, libc::MADV_HUGEPAGE);
        }
        let aligned = NonNull::new(aligned).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(aligned, len))
    }

    unsafe fn deallocate(&self, block: NonNull<u8>, layout: Layout) {
        if !Self::mapped(layout) {
            // SAFETY: a block of this layout came from the global allocator (`allocate`).
            return unsafe { Global.deallocate(block, layout) };
        }
        // SAFETY: `allocate` mapped this block with this length (the caller passes the
        // layout it was allocated with), and nothing uses it any more.
        unsafe {
            libc::munmap(
                block.as_ptr().cast(),
                layout.size().next_multiple_of(HUGE_PAGE),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by each test here, so that no other mapped block sits next to the one a test looks
    /// for in the process's mappings (the kernel merges neighbours alike).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The mappings of this process that start at `at`, as `(start, end)`.
    fn mapping_at(at: usize) -> Option<(usize, usize)> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            let (start, end) = line.split_whitespace().next()?.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start == at).then_some((start, end))
        })
    }

    #[test]
    fn a_big_block_is_its_own_aligned_mapping_in_whole_huge_pages_until_freed() {
        let _alone = ONE_AT_A_TIME.lock();
        let layout = Layout::from_size_align(3 << 20, 8).unwrap();
        let block = HugePages.allocate(layout).unwrap();
        let at = block.cast::<u8>().as_ptr() as usize;
        assert_eq!(at % HUGE_PAGE, 0, "aligned to a huge page");
        assert_eq!(block.len(), 4 << 20, "rounded up to whole huge pages");
        if cfg!(target_os = "linux") {
            // The spare ends were given back: the mapping is exactly the block.
            assert_eq!(mapping_at(at), Some((at, at + (4 << 20))));
        }
        // SAFETY: the block is 4 MiB of writable memory owned by this test.
        let bytes = unsafe { std::slice::from_raw_parts_mut(block.cast::<u8>().as_ptr(), 4 << 20) };
        assert!(
            bytes.iter().step_by(4096).all(|&b| b == 0),
            "fresh pages read zero"
        );
        bytes[0] = 1;
        bytes[(4 << 20) - 1] = 2;
        assert_eq!((bytes[0], bytes[(4 << 20) - 1]), (1, 2));
        // SAFETY: allocated above with this layout, no longer used.
        unsafe { HugePages.deallocate(block.cast(), layout) };
        if cfg!(target_os = "linux") {
            assert_eq!(mapping_at(at), None, "unmapped when freed");
        }
    }

    #[test]
    fn a_table_grows_from_the_global_heap_into_huge_pages_and_keeps_its_entries() {
        let _alone = ONE_AT_A_TIME.lock();
        let mut map: hashbrown::HashMap<u64, [u64; 16], _, _> =
            hashbrown::HashMap::with_hasher_in(std::hash::RandomState::new(), HugePages);
        // 30,000 entries of 136 bytes: the table passes 2 MiB on the way, and moves from a
        // block of the global allocator to a mapped one.
        for key in 0..30_000u64 {
            map.insert(key, [key; 16]);
        }
        assert!(
            map.allocation_size() >= HUGE_PAGE,
            "{}",
            map.allocation_size()
        );
        assert!((0..30_000u64).all(|key| map.get(&key) == Some(&[key; 16])));
        map.retain(|key, _| key % 2 == 0);
        map.shrink_to_fit();
        assert_eq!(map.len(), 15_000);
        assert!((0..30_000u64).all(|key| map.contains_key(&key) == (key % 2 == 0)));
    }
}
