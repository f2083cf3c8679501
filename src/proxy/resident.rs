//! Give back what only the startup needed, once the session is set up (issue 19, peak RSS).
//!
//! Measured with `/proc/PID/smaps` under 1 MiB responses (`--mode full`, the realistic policy):
//! the proxy's peak of ~11.4 MiB was 5.0 MiB of capjail's 5.15 MiB of code and 1.2 MiB of its
//! read-only data resident, 1.4 MiB of libc, and ~3.4 MiB of anonymous memory. The code is
//! resident not because the proxy runs it: the startup (command line, policy YAML, regex and
//! aho-corasick compilation, the sandbox's plans, the runtime) touches code all over the
//! executable, and the kernel maps 64 KiB around every fault (`fault_around_bytes`), so
//! nearly every page of the text ends up mapped. The pumps map back what their path reaches
//! (measured: ~3.1 of the 5.15 MiB of text, 0.6 of libc's 1.4 MiB; the hot path's functions
//! are spread over the binary and each fault maps 64 KiB around it).
//!
//! [`release_startup_pages`] drops this process's mappings of the read-only segments (text,
//! read-only data) of the executable and of its shared libraries (libc, libm, libgcc_s, the
//! loader: 2 MiB resident at the peak, for the same reason) with `MADV_DONTNEED`: the pages stay in the page cache (shared, clean,
//! the file's own bytes), the mappings, their addresses (PIE/ASLR) and protections are
//! unchanged, and what the proxy still runs is mapped again on its first use (a minor fault
//! from the page cache, once). Nothing writable is touched: the relocated `.data.rel.ro`,
//! `.data`, `.bss`, the GOT and the heap are in writable segments (`PF_W`), which are
//! excluded, page by page; an object with text relocations is left alone, and so is the
//! vDSO. The kernel can drop the same clean pages on its own under memory pressure: this
//! adds no state the process did not already have to cope with.
//! Only pages that `/proc/self/pagemap` shows mapped from the page cache are dropped: a page
//! that is a private copy (a uprobe's breakpoint, which the kernel installs as a copy of the
//! page and does not put back on a later fault; a debugger's breakpoint; a hook another tool
//! patched into libc) is kept, so no probe or hook silently vanishes. What is left is the
//! window between reading pagemap and `madvise` (microseconds, once per session): a uprobe
//! registered exactly then, in a page of that range, is lost for this process.
//! Then `malloc_trim(0)` returns the heap the startup freed (the parsed YAML, the policy's
//! intermediate forms) to the kernel.

/// One loadable segment of the executable, as its program header says (addresses already
/// relocated by the load bias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) writable: bool,
}

/// The page ranges `[start, end)` that may be released: whole pages inside a read-only
/// segment that share no byte with any writable segment. Pure; `page` is a power of two.
pub(crate) fn releasable(segments: &[Segment], page: usize) -> Vec<(usize, usize)> {
    let down = |a: usize| a & !(page - 1);
    let up = |a: usize| a.saturating_add(page - 1) & !(page - 1);
    // Pages any writable segment touches (rounded outwards): never released.
    let writable: Vec<(usize, usize)> = segments
        .iter()
        .filter(|s| s.writable && s.len > 0)
        .map(|s| (down(s.start), up(s.start.saturating_add(s.len))))
        .collect();
    let mut out = Vec::new();
    for s in segments.iter().filter(|s| !s.writable && s.len > 0) {
        // Rounded inwards: a page shared with a neighbour's bytes is kept.
        let (mut lo, hi) = (up(s.start), down(s.start.saturating_add(s.len)));
        if lo >= hi {
            continue;
        }
        let mut cuts: Vec<(usize, usize)> = writable
            .iter()
            .copied()
            .filter(|&(a, b)| a < hi && b > lo)
            .collect();
        cuts.sort_unstable();
        for (a, b) in cuts {
            if a > lo {
                out.push((lo, a));
            }
            lo = lo.max(b);
        }
        if lo < hi {
            out.push((lo, hi));
        }
    }
    out
}

/// Is a tracer attached (`TracerPid` of `/proc/self/status` not 0)? Unreadable: assume so.
pub(crate) fn traced(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .is_none_or(|pid| pid.trim() != "0")
}

/// Drop the mappings of the loaded objects' read-only pages and trim the heap (see the module
/// documentation). Best effort: a failure only leaves the pages mapped.
pub(crate) fn release_startup_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Under a debugger nothing is released (belt and braces: its breakpoints are private
        // copies, which `release_file_pages` keeps anyway).
        let traced = std::fs::read_to_string("/proc/self/status")
            .map(|s| traced(&s))
            .unwrap_or(true);
        if traced {
            return;
        }
        let objects = loaded_objects();
        // SAFETY: sysconf only reads a constant of the system.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 && (p as usize).is_power_of_two() => p as usize,
            _ => return,
        };
        let ranges: Vec<(usize, usize)> =
            objects.iter().flat_map(|o| releasable(o, page)).collect();
        let released = release_file_pages(&ranges, page);
        // SAFETY: malloc_trim only returns free heap memory to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
        tracing::debug!(bytes = released, "startup pages released");
    }
}

/// Bits of a `/proc/self/pagemap` entry (the kernel's admin-guide/mm/pagemap.rst).
const PM_PRESENT: u64 = 1 << 63;
const PM_FILE: u64 = 1 << 61;

/// The runs of pages of `[start, start + entries.len() * page)` that may be released, given
/// each page's pagemap entry: pages mapped straight from the file's page cache (present,
/// file-backed). A page that is a private, anonymous copy is kept: a uprobe's or a debugger's
/// breakpoint, a hook another tool patched into the code (the kernel installs each as a copy
/// of the page); a swapped or unmapped page needs nothing. Pure.
pub(crate) fn file_backed_runs(start: usize, page: usize, entries: &[u64]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e & PM_PRESENT == 0 || e & PM_FILE == 0 {
            continue;
        }
        let a = start + i * page;
        match out.last_mut() {
            Some(last) if last.1 == a => last.1 = a + page,
            _ => out.push((a, a + page)),
        }
    }
    out
}

/// Unmap the page-cache pages of each range (whole pages of read-only segments), after reading
/// which they are from `/proc/self/pagemap`: a private copy is never dropped (see
/// [`file_backed_runs`]). A range whose entries cannot be read is left alone. Returns the bytes
/// released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_file_pages(ranges: &[(usize, usize)], page: usize) -> usize {
    use std::os::unix::fs::FileExt;
    let Ok(pagemap) = std::fs::File::open("/proc/self/pagemap") else {
        return 0;
    };
    let mut released = 0usize;
    let mut raw: Vec<u8> = Vec::new();
    for &(start, end) in ranges {
        let pages = (end - start) / page;
        raw.resize(pages * 8, 0);
        if pagemap
            .read_exact_at(&mut raw, (start / page * 8) as u64)
            .is_err()
        {
            continue;
        }
        let entries: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect();
        for (a, b) in file_backed_runs(start, page, &entries) {
            // SAFETY: whole pages of a read-only, file-backed segment of a loaded object that
            // pagemap just showed mapped from the page cache (no private copy to lose);
            // MADV_DONTNEED only unmaps them, the next access maps the file's page again.
            if unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) } == 0 {
                released += b - a;
            }
        }
    }
    released
}

/// The loadable segments of each object mapped from a file: the executable and its shared
/// libraries (libc, libm, libgcc_s, the loader), not the vDSO (the kernel's own pages).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn loaded_objects() -> Vec<Vec<Segment>> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info for the duration of the call, and `data` is
        // the `Vec<Vec<Segment>>` given to dl_iterate_phdr below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Vec<Segment>>)) };
        let name = if info.dlpi_name.is_null() {
            &[][..]
        } else {
            // SAFETY: dlpi_name is a NUL-terminated string (empty for the executable).
            unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
        };
        if !info.dlpi_phdr.is_null() && !name.starts_with(b"linux-vdso") {
            // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
            let headers =
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
            // Text relocations would have written private copies of "read-only" pages:
            // releasing those would lose them, so such an object is left alone.
            if headers
                .iter()
                .filter(|h| h.p_type == libc::PT_DYNAMIC)
                // SAFETY: the dynamic section of a loaded object is mapped and ends with
                // DT_NULL.
                .any(|h| unsafe { has_text_relocations(info.dlpi_addr as usize, h) })
            {
                return 0;
            }
            out.push(
                headers
                    .iter()
                    .filter(|h| h.p_type == libc::PT_LOAD)
                    .map(|h| Segment {
                        start: (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize),
                        len: h.p_memsz as usize,
                        writable: h.p_flags & libc::PF_W != 0,
                    })
                    .collect(),
            );
        }
        0 // every object
    }
    /// SAFETY: `h` is the PT_DYNAMIC header of an object loaded at `bias`.
    unsafe fn has_text_relocations(bias: usize, h: &libc::Elf64_Phdr) -> bool {
        const DT_TEXTREL: i64 = 22;
        const DT_FLAGS: i64 = 30;
        const DF_TEXTREL: u64 = 4;
        #[repr(C)]
        struct Dyn {
            d_tag: i64,
            d_val: u64,
        }
        let mut d = bias.wrapping_add(h.p_vaddr as usize) as *const Dyn;
        loop {
            // SAFETY: within the dynamic array, which ends with a DT_NULL entry.
            let e = unsafe { &*d };
            match e.d_tag {
                0 => return false,
                DT_TEXTREL => return true,
                DT_FLAGS if e.d_val & DF_TEXTREL != 0 => return true,
                _ => {}
            }
            // SAFETY: the next entry exists (this one was not DT_NULL).
            d = unsafe { d.add(1) };
        }
    }
    let mut objects: Vec<Vec<Segment>> = Vec::new();
    // SAFETY: the callback only reads the headers and writes to `objects`, which outlives
    // the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            &mut objects as *mut Vec<Vec<Segment>> as *mut libc::c_void,
        );
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: usize = 0x1000;

    fn seg(start: usize, len: usize, writable: bool) -> Segment {
        Segment {
            start,
            len,
            writable,
        }
    }

    #[test]
    fn whole_pages_of_read_only_segments_only() {
        // The shape of capjail's own headers: R, R+X, RW (RELRO), RW.
        let s = [
            seg(0x0, 0x1baf08, false),
            seg(0x1bbf10, 0x506700, false),
            seg(0x6c3610, 0x3b9f0, true),
            seg(0x6fff78, 0x1c08, true),
        ];
        assert_eq!(
            releasable(&s, P),
            vec![(0x0, 0x1ba000), (0x1bc000, 0x6c2000)]
        );
    }

    #[test]
    fn a_page_shared_with_a_writable_segment_is_kept() {
        // The read-only segment ends on the page the writable one starts on.
        let s = [seg(0x10000, 0x5800, false), seg(0x15800, 0x1000, true)];
        assert_eq!(releasable(&s, P), vec![(0x10000, 0x15000)]);
        // A writable segment inside a read-only one splits it.
        let s = [seg(0x10000, 0x10000, false), seg(0x14100, 0x100, true)];
        assert_eq!(
            releasable(&s, P),
            vec![(0x10000, 0x14000), (0x15000, 0x20000)]
        );
    }

    #[test]
    fn a_tracer_keeps_the_pages() {
        assert!(!traced("Name:\tcapjail\nTracerPid:\t0\nUid:\t0\n"));
        assert!(traced("Name:\tcapjail\nTracerPid:\t4242\n"));
        assert!(traced("Name:\tcapjail\n"));
    }

    #[test]
    fn nothing_when_no_whole_page_fits() {
        assert!(releasable(&[seg(0x10010, 0x800, false)], P).is_empty());
        assert!(releasable(&[seg(0x10000, 0, false)], P).is_empty());
        assert!(releasable(&[seg(0x10000, 0x4000, true)], P).is_empty());
    }

    #[test]
    fn only_present_file_pages_are_released_in_runs() {
        let file = PM_PRESENT | PM_FILE | 0x1234;
        let anon = PM_PRESENT | 0x99;
        let swapped = 1u64 << 62;
        let entries = [file, file, anon, 0, file, swapped, file, file];
        assert_eq!(
            file_backed_runs(0x10000, P, &entries),
            vec![
                (0x10000, 0x10000 + 2 * P),
                (0x10000 + 4 * P, 0x10000 + 5 * P),
                (0x10000 + 6 * P, 0x10000 + 8 * P)
            ]
        );
        assert!(file_backed_runs(0x10000, P, &[anon, 0, swapped]).is_empty());
    }

    /// By effect: a page of a read-only private file mapping that was patched (what a uprobe,
    /// a debugger or a hooking library leaves: a private copy) keeps its bytes through the
    /// release; its untouched neighbour is released and reads the file's bytes again.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_patched_page_survives_the_release() {
        use std::io::Write;
        // SAFETY: sysconf only reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![b'f'; 2 * page]).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private read-only mapping of a file we own, unmapped below; every
        // access stays inside its two pages.
        unsafe {
            let m = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(m, libc::MAP_FAILED);
            let base = m as usize;
            // Touch both pages, then patch the second as a hook would.
            assert_eq!(*(base as *const u8), b'f');
            assert_eq!(
                libc::mprotect(m, 2 * page, libc::PROT_READ | libc::PROT_WRITE),
                0
            );
            *((base + page) as *mut u8) = b'P';
            assert_eq!(libc::mprotect(m, 2 * page, libc::PROT_READ), 0);
            let released = release_file_pages(&[(base, base + 2 * page)], page);
            assert_eq!(released, page, "only the untouched page is released");
            assert_eq!(*((base + page) as *const u8), b'P', "the patch is kept");
            assert_eq!(*(base as *const u8), b'f');
            libc::munmap(m, 2 * page);
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_objects_have_read_only_and_writable_segments_and_survive_the_release() {
        let o = loaded_objects();
        // The executable and at least libc.
        assert!(o.len() >= 2, "{o:?}");
        let s = &o[0];
        assert!(s.iter().any(|s| !s.writable), "{s:?}");
        assert!(s.iter().any(|s| s.writable), "{s:?}");
        release_startup_pages();
        // Code and read-only data are mapped again on use.
        let v: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        assert_eq!(v[99], "63");
    }
}
