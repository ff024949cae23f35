//! The C calls the library makes outside libpcap's bindings, kept here so that the rest of
//! the crate denies `unsafe` code.

#![allow(unsafe_code)]

/// Hours, minutes and seconds of `secs` since the epoch in the local time zone, or None when
/// the C library cannot convert it.
#[inline]
pub(crate) fn local_hms(secs: i64) -> Option<(i32, i32, i32)> {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r only writes the tm we pass; a zeroed tm is a valid initial value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    ok.then_some((tm.tm_hour, tm.tm_min, tm.tm_sec))
}
