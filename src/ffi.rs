//! The C calls the library makes outside libpcap's bindings, and the one CPU hint it gives,
//! each behind a small safe function, kept here so that this is the one module of the crate
//! that allows `unsafe` code.

#![allow(unsafe_code)]

use std::os::fd::RawFd;

/// The local date and time of `secs` since the epoch: (year, month 1-12, day, hour, minute,
/// second), or None when the C library cannot convert it.
#[inline]
pub(crate) fn local_time(secs: i64) -> Option<(i64, u32, u32, i32, i32, i32)> {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r only writes the tm we pass; a zeroed tm is a valid initial value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    ok.then_some((
        i64::from(tm.tm_year) + 1900,
        u32::try_from(tm.tm_mon + 1).unwrap_or(1),
        u32::try_from(tm.tm_mday).unwrap_or(1),
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    ))
}

/// Waits until `fd` has something to read or `timeout_ms` passes, or a signal comes.
pub(crate) fn wait_readable(fd: RawFd, timeout_ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, which poll only writes revents of; a descriptor that is not
    // open is reported in revents, not undefined behaviour. The caller's stays open while the
    // capture lives.
    unsafe {
        libc::poll(&mut pfd, 1, timeout_ms);
    }
}

/// Sleeps for `pause`, or less if a signal comes (`nanosleep` is never restarted).
pub(crate) fn pause(pause: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: pause.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: pause.subsec_nanos().into(),
    };
    // SAFETY: a valid timespec; no remainder is asked for (a null pointer is allowed).
    unsafe {
        libc::nanosleep(&ts, std::ptr::null_mut());
    }
}

/// The columns of the terminal `fd` is open on; None when it is not a terminal or does not
/// say (a width of 0).
pub(crate) fn terminal_columns(fd: RawFd) -> Option<u16> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize, the one we pass; on a descriptor that is not a
    // terminal it fails with ENOTTY and writes nothing.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col)
}

/// A cache line of every x86_64 CPU.
#[cfg(target_arch = "x86_64")]
const LINE: usize = 64;

/// Asks the CPU to bring every cache line of `value` in, without waiting for them: a packet's
/// connection state is cold at tens of thousands of connections, and lines fetched together
/// cost about one miss instead of one each, taken in turn as the code reaches them.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // As many lines as `value` can span wherever it starts: a count known when compiling,
        // so the loop unrolls into that many instructions (counting the lines from the real
        // start was a loop: 5% more instructions in all at 500 connections, this 1.6%).
        let lines = (LINE - 1 + std::mem::size_of::<T>()).div_ceil(LINE);
        let start = (value as *const T).cast::<i8>();
        for line in 0..lines {
            // SAFETY: a prefetch is a hint: it never faults, whatever the address, and reads
            // nothing the program sees. SSE, which it needs, is part of every x86_64 CPU.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line * LINE)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Asks the CPU for the cache lines from address `from` up to `to`, without waiting for them.
#[inline(always)]
pub(crate) fn prefetch_range(from: usize, to: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let mut at = from & !(LINE - 1);
        while at < to {
            // SAFETY: as in `prefetch`: a hint that never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) };
            at += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (from, to);
}
