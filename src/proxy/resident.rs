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
        // A debugger's breakpoints (and uprobes) are private copies of text pages: released,
        // they would silently vanish. Under a tracer the pages stay.
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
        let mut released = 0usize;
        for (start, end) in objects.iter().flat_map(|o| releasable(o, page)) {
            // SAFETY: the range is whole pages of a read-only, file-backed segment of a loaded
            // object (never written: no private copy to lose); MADV_DONTNEED only unmaps
            // them, the next access maps the file's page again.
            let r = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if r == 0 {
                released += end - start;
            }
        }
        // SAFETY: malloc_trim only returns free heap memory to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
        tracing::debug!(bytes = released, "startup pages released");
    }
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
