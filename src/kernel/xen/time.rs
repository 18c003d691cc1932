//! Xen system time (nanoseconds since the host booted) from vcpu_time_info and the TSC.

use super::shared_info::time_info;
use grantsvc::abi::shared_info::VcpuTimeInfo;

/// Nanoseconds of Xen system time now, or `None` before shared_info is mapped.
pub fn system_time_ns() -> Option<u64> {
    let info = time_info()?;
    let delta = read_tsc().wrapping_sub(info.tsc_timestamp);
    Some(info.system_time.wrapping_add(tsc_to_ns(delta, &info)))
}

/// A nanosecond clock for measuring short intervals: the TSC scaled by Xen's current factor.
///
/// Unlike [`system_time_ns`] it is not re-anchored each time Xen refreshes vcpu_time_info, so
/// it does not step backwards: under QEMU's TCG the re-anchored time jumps by milliseconds,
/// which turned a benchmark's short intervals into zero.
#[cfg(feature = "lab")]
pub fn interval_clock_ns() -> Option<u64> {
    let info = time_info()?;
    Some(tsc_to_ns(read_tsc(), &info))
}

fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; Xen lets PV guests execute it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Converts TSC ticks to nanoseconds with vcpu_time_info's shift and 32.32 multiplier.
fn tsc_to_ns(ticks: u64, info: &VcpuTimeInfo) -> u64 {
    let shifted = if info.tsc_shift >= 0 {
        ticks << info.tsc_shift as u32
    } else {
        ticks >> info.tsc_shift.unsigned_abs() as u32
    };
    ((u128::from(shifted) * u128::from(info.tsc_to_system_mul)) >> 32) as u64
}
