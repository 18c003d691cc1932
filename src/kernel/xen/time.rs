//! Xen system time (nanoseconds since the host booted) from vcpu_time_info and the TSC.

use super::shared_info::time_info;

/// Nanoseconds of Xen system time now, or `None` before shared_info is mapped.
pub fn system_time_ns() -> Option<u64> {
    let info = time_info()?;
    // SAFETY: RDTSC has no memory effects; Xen lets PV guests execute it.
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    let mut delta = tsc.wrapping_sub(info.tsc_timestamp);
    if info.tsc_shift >= 0 {
        delta <<= info.tsc_shift as u32;
    } else {
        delta >>= info.tsc_shift.unsigned_abs() as u32;
    }
    let scaled = ((u128::from(delta) * u128::from(info.tsc_to_system_mul)) >> 32) as u64;
    Some(info.system_time.wrapping_add(scaled))
}
