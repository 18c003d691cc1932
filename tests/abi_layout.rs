//! Checks the Rust Xen ABI types and constants against Xen's public C headers, compiled with gcc.
//!
//! Needs `gcc` and `/usr/include/xen` (Debian's `libxen-dev`, which `make test` installs through
//! the lab's install script). When either is missing the test fails and says so: a silently
//! skipped layout check proves nothing.

use core::mem::{offset_of, size_of};
use grantsvc::abi::arch_x86_64::{
    TrapInfo, FLAT_KERNEL_CS, FLAT_KERNEL_SS, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START,
    MACH2PHYS_VIRT_END, MACH2PHYS_VIRT_START,
};
use grantsvc::abi::console::{XenconsInterface, IN_RING_SIZE, OUT_RING_SIZE};
use grantsvc::abi::event_channel::*;
use grantsvc::abi::grant_table::{
    gntmap, gtf, op, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable, GnttabUnmapGrantRef,
    GrantEntryV1,
};
use grantsvc::abi::hypercall_numbers as hypercall;
use grantsvc::abi::mmu::{self, mmuext, MmuUpdate, MmuextOp};
use grantsvc::abi::sched::*;
use grantsvc::abi::shared_info::{
    ArchSharedInfo, ArchVcpuInfo, SharedInfo, VcpuInfo, VcpuTimeInfo, LEGACY_MAX_VCPUS,
};
use grantsvc::abi::start_info::{sif, StartInfo, StartInfoConsole, MAX_GUEST_CMDLINE};
use std::path::Path;
use std::process::Command;
use xenstore::{ring, wire, MessageType};

const HEADERS: &str = "/usr/include/xen";

/// One fact to compare: a label, the C expression giving it, and Rust's value.
struct Fact {
    label: String,
    c_expression: String,
    rust_value: u64,
}

/// Facts about a struct: its size and the offset of each named field.
macro_rules! layout {
    ($facts:ident, $c_type:literal, $rust_type:ty, [$($c_field:literal => $($rust_field:tt).+),* $(,)?]) => {
        $facts.push(Fact {
            label: format!("sizeof({})", $c_type),
            c_expression: format!("sizeof({})", $c_type),
            rust_value: size_of::<$rust_type>() as u64,
        });
        $(
            $facts.push(Fact {
                label: format!("offsetof({}, {})", $c_type, $c_field),
                c_expression: format!("offsetof({}, {})", $c_type, $c_field),
                rust_value: offset_of!($rust_type, $($rust_field).+) as u64,
            });
        )*
    };
}

/// Facts about constants: each C macro against its Rust value.
macro_rules! constants {
    ($facts:ident, [$($c_name:literal => $rust_value:expr),* $(,)?]) => {
        $(
            $facts.push(Fact {
                label: String::from($c_name),
                c_expression: format!("(unsigned long long)({})", $c_name),
                rust_value: ($rust_value) as u64,
            });
        )*
    };
}

fn facts() -> Vec<Fact> {
    let mut facts = Vec::new();
    layout!(facts, "struct start_info", StartInfo, [
        "magic" => magic, "nr_pages" => nr_pages, "shared_info" => shared_info,
        "flags" => flags, "store_mfn" => store_mfn, "store_evtchn" => store_evtchn,
        "console.domU.mfn" => console.mfn, "console.domU.evtchn" => console.evtchn,
        "pt_base" => pt_base, "nr_pt_frames" => nr_pt_frames, "mfn_list" => mfn_list,
        "mod_start" => mod_start, "mod_len" => mod_len, "cmd_line" => cmd_line,
        "first_p2m_pfn" => first_p2m_pfn, "nr_p2m_frames" => nr_p2m_frames,
    ]);
    facts.push(Fact {
        label: "sizeof(start_info.console)".into(),
        c_expression: "sizeof(((struct start_info *)0)->console)".into(),
        rust_value: size_of::<StartInfoConsole>() as u64,
    });
    layout!(facts, "struct vcpu_time_info", VcpuTimeInfo, [
        "version" => version, "tsc_timestamp" => tsc_timestamp, "system_time" => system_time,
        "tsc_to_system_mul" => tsc_to_system_mul, "tsc_shift" => tsc_shift, "flags" => flags,
    ]);
    layout!(facts, "struct arch_vcpu_info", ArchVcpuInfo, ["cr2" => cr2]);
    layout!(facts, "struct vcpu_info", VcpuInfo, [
        "evtchn_upcall_pending" => evtchn_upcall_pending,
        "evtchn_upcall_mask" => evtchn_upcall_mask,
        "evtchn_pending_sel" => evtchn_pending_sel,
        "arch.cr2" => arch.cr2, "time" => time,
    ]);
    layout!(facts, "struct arch_shared_info", ArchSharedInfo, [
        "max_pfn" => max_pfn, "pfn_to_mfn_frame_list_list" => pfn_to_mfn_frame_list_list,
        "nmi_reason" => nmi_reason, "p2m_cr3" => p2m_cr3, "p2m_vaddr" => p2m_vaddr,
        "p2m_generation" => p2m_generation,
    ]);
    layout!(facts, "struct shared_info", SharedInfo, [
        "vcpu_info" => vcpu_info, "evtchn_pending" => evtchn_pending,
        "evtchn_mask" => evtchn_mask, "wc_version" => wc_version, "wc_sec" => wc_sec,
        "wc_nsec" => wc_nsec, "wc_sec_hi" => wc_sec_hi, "arch" => arch,
    ]);
    layout!(facts, "struct mmu_update", MmuUpdate, ["ptr" => ptr, "val" => val]);
    layout!(facts, "struct mmuext_op", MmuextOp, [
        "cmd" => cmd, "arg1" => arg1, "arg2" => arg2,
    ]);
    layout!(facts, "struct gnttab_map_grant_ref", GnttabMapGrantRef, [
        "host_addr" => host_addr, "flags" => flags, "ref" => ref_, "dom" => dom,
        "status" => status, "handle" => handle, "dev_bus_addr" => dev_bus_addr,
    ]);
    layout!(facts, "struct gnttab_unmap_grant_ref", GnttabUnmapGrantRef, [
        "host_addr" => host_addr, "dev_bus_addr" => dev_bus_addr, "handle" => handle,
        "status" => status,
    ]);
    layout!(facts, "struct gnttab_setup_table", GnttabSetupTable, [
        "dom" => dom, "nr_frames" => nr_frames, "status" => status,
        "frame_list" => frame_list,
    ]);
    layout!(facts, "struct gnttab_query_size", GnttabQuerySize, [
        "dom" => dom, "nr_frames" => nr_frames, "max_nr_frames" => max_nr_frames,
        "status" => status,
    ]);
    layout!(facts, "struct grant_entry_v1", GrantEntryV1, [
        "flags" => flags, "domid" => domid, "frame" => frame,
    ]);
    layout!(facts, "struct evtchn_alloc_unbound", EvtchnAllocUnbound, [
        "dom" => dom, "remote_dom" => remote_dom, "port" => port,
    ]);
    layout!(facts, "struct evtchn_bind_interdomain", EvtchnBindInterdomain, [
        "remote_dom" => remote_dom, "remote_port" => remote_port, "local_port" => local_port,
    ]);
    layout!(facts, "struct evtchn_bind_virq", EvtchnBindVirq, [
        "virq" => virq, "vcpu" => vcpu, "port" => port,
    ]);
    layout!(facts, "struct evtchn_send", EvtchnPortArgument, ["port" => port]);
    layout!(facts, "struct evtchn_close", EvtchnPortArgument, ["port" => port]);
    layout!(facts, "struct evtchn_unmask", EvtchnPortArgument, ["port" => port]);
    layout!(facts, "struct evtchn_status", EvtchnStatus, [
        "dom" => dom, "port" => port, "status" => status, "vcpu" => vcpu, "u" => u,
    ]);
    facts.push(Fact {
        label: "offsetof(struct evtchn_status, u.interdomain.port)".into(),
        c_expression: "offsetof(struct evtchn_status, u.interdomain.port)".into(),
        rust_value: (offset_of!(EvtchnStatus, u) + 4) as u64,
    });
    layout!(facts, "struct sched_shutdown", SchedShutdown, ["reason" => reason]);
    layout!(facts, "struct sched_poll", SchedPoll, [
        "ports" => ports, "nr_ports" => nr_ports, "timeout" => timeout,
    ]);
    layout!(facts, "struct trap_info", TrapInfo, [
        "vector" => vector, "flags" => flags, "cs" => cs, "address" => address,
    ]);
    layout!(facts, "struct xencons_interface", XenconsInterface, [
        "in" => input, "out" => output, "in_cons" => in_cons, "in_prod" => in_prod,
        "out_cons" => out_cons, "out_prod" => out_prod,
    ]);
    // The xenstore crate's own numbers, which the kernel's xenstore client runs on (the crate
    // stays free of grantsvc, so it keeps them itself and they are checked here).
    constants!(facts, [
        "sizeof(struct xenstore_domain_interface)" => ring::INTERFACE_SIZE,
        "offsetof(struct xenstore_domain_interface, req)" => ring::REQUEST_RING_OFFSET,
        "offsetof(struct xenstore_domain_interface, rsp)" => ring::RESPONSE_RING_OFFSET,
        "offsetof(struct xenstore_domain_interface, req_cons)" => ring::REQUEST_CONSUMER_OFFSET,
        "offsetof(struct xenstore_domain_interface, req_prod)" => ring::REQUEST_PRODUCER_OFFSET,
        "offsetof(struct xenstore_domain_interface, rsp_cons)" => ring::RESPONSE_CONSUMER_OFFSET,
        "offsetof(struct xenstore_domain_interface, rsp_prod)" => ring::RESPONSE_PRODUCER_OFFSET,
        "offsetof(struct xenstore_domain_interface, server_features)" => ring::SERVER_FEATURES_OFFSET,
        "offsetof(struct xenstore_domain_interface, connection)" => ring::CONNECTION_OFFSET,
        "offsetof(struct xenstore_domain_interface, error)" => ring::ERROR_OFFSET,
        "XENSTORE_RING_SIZE" => ring::RING_SIZE,
        "XENSTORE_SERVER_FEATURE_RECONNECTION" => ring::FEATURE_RECONNECTION,
        "XENSTORE_SERVER_FEATURE_ERROR" => ring::FEATURE_ERROR,
        "XENSTORE_CONNECTED" => ring::CONNECTED,
        "XENSTORE_RECONNECT" => ring::RECONNECT,
        "sizeof(struct xsd_sockmsg)" => wire::HEADER_SIZE,
        "XENSTORE_PAYLOAD_MAX" => wire::PAYLOAD_MAX,
        "XENSTORE_ABS_PATH_MAX" => wire::ABSOLUTE_PATH_MAX,
        "XENSTORE_REL_PATH_MAX" => wire::RELATIVE_PATH_MAX,
        "XS_DEBUG" => MessageType::DEBUG.to_wire(),
    ]);
    for message_type in MessageType::ALL {
        facts.push(Fact {
            label: String::from(message_type.name()),
            c_expression: format!("(unsigned long long)({})", message_type.name()),
            rust_value: u64::from(message_type.to_wire()),
        });
    }

    constants!(facts, [
        "__HYPERVISOR_set_trap_table" => hypercall::SET_TRAP_TABLE,
        "__HYPERVISOR_mmu_update" => hypercall::MMU_UPDATE,
        "__HYPERVISOR_set_callbacks" => hypercall::SET_CALLBACKS,
        "__HYPERVISOR_update_va_mapping" => hypercall::UPDATE_VA_MAPPING,
        "__HYPERVISOR_set_timer_op" => hypercall::SET_TIMER_OP,
        "__HYPERVISOR_xen_version" => hypercall::XEN_VERSION,
        "__HYPERVISOR_console_io" => hypercall::CONSOLE_IO,
        "__HYPERVISOR_grant_table_op" => hypercall::GRANT_TABLE_OP,
        "__HYPERVISOR_vm_assist" => hypercall::VM_ASSIST,
        "__HYPERVISOR_iret" => hypercall::IRET,
        "__HYPERVISOR_vcpu_op" => hypercall::VCPU_OP,
        "__HYPERVISOR_mmuext_op" => hypercall::MMUEXT_OP,
        "__HYPERVISOR_sched_op" => hypercall::SCHED_OP,
        "__HYPERVISOR_callback_op" => hypercall::CALLBACK_OP,
        "__HYPERVISOR_event_channel_op" => hypercall::EVENT_CHANNEL_OP,
        "XENVER_version" => hypercall::XENVER_VERSION,
        "XENVER_extraversion" => hypercall::XENVER_EXTRAVERSION,
        "CONSOLEIO_write" => hypercall::CONSOLEIO_WRITE,
        "UVMF_INVLPG" => hypercall::UVMF_INVLPG,
        "SCHEDOP_yield" => SCHEDOP_YIELD,
        "SCHEDOP_block" => SCHEDOP_BLOCK,
        "SCHEDOP_shutdown" => SCHEDOP_SHUTDOWN,
        "SCHEDOP_poll" => SCHEDOP_POLL,
        "SHUTDOWN_poweroff" => ShutdownReason::Poweroff as u32,
        "SHUTDOWN_reboot" => ShutdownReason::Reboot as u32,
        "SHUTDOWN_suspend" => ShutdownReason::Suspend as u32,
        "SHUTDOWN_crash" => ShutdownReason::Crash as u32,
        "SHUTDOWN_watchdog" => ShutdownReason::Watchdog as u32,
        "EVTCHNOP_bind_interdomain" => EVTCHNOP_BIND_INTERDOMAIN,
        "EVTCHNOP_bind_virq" => EVTCHNOP_BIND_VIRQ,
        "EVTCHNOP_close" => EVTCHNOP_CLOSE,
        "EVTCHNOP_send" => EVTCHNOP_SEND,
        "EVTCHNOP_status" => EVTCHNOP_STATUS,
        "EVTCHNOP_alloc_unbound" => EVTCHNOP_ALLOC_UNBOUND,
        "EVTCHNOP_unmask" => EVTCHNOP_UNMASK,
        "EVTCHNSTAT_closed" => status::CLOSED,
        "EVTCHNSTAT_unbound" => status::UNBOUND,
        "EVTCHNSTAT_interdomain" => status::INTERDOMAIN,
        "EVTCHNSTAT_pirq" => status::PIRQ,
        "EVTCHNSTAT_virq" => status::VIRQ,
        "EVTCHNSTAT_ipi" => status::IPI,
        "EVTCHN_2L_NR_CHANNELS" => EVTCHN_2L_NR_CHANNELS,
        "GNTTABOP_map_grant_ref" => op::MAP_GRANT_REF,
        "GNTTABOP_unmap_grant_ref" => op::UNMAP_GRANT_REF,
        "GNTTABOP_setup_table" => op::SETUP_TABLE,
        "GNTTABOP_query_size" => op::QUERY_SIZE,
        "GNTTABOP_set_version" => op::SET_VERSION,
        "GNTTABOP_get_version" => op::GET_VERSION,
        "GNTMAP_device_map" => gntmap::DEVICE_MAP,
        "GNTMAP_host_map" => gntmap::HOST_MAP,
        "GNTMAP_readonly" => gntmap::READONLY,
        "GNTMAP_application_map" => gntmap::APPLICATION_MAP,
        "GNTMAP_contains_pte" => gntmap::CONTAINS_PTE,
        "GTF_permit_access" => gtf::PERMIT_ACCESS,
        "GTF_readonly" => gtf::READONLY,
        "GTF_reading" => gtf::READING,
        "GTF_writing" => gtf::WRITING,
        "MMU_NORMAL_PT_UPDATE" => mmu::MMU_NORMAL_PT_UPDATE,
        "MMU_MACHPHYS_UPDATE" => mmu::MMU_MACHPHYS_UPDATE,
        "MMU_PT_UPDATE_PRESERVE_AD" => mmu::MMU_PT_UPDATE_PRESERVE_AD,
        "MMU_PT_UPDATE_NO_TRANSLATE" => mmu::MMU_PT_UPDATE_NO_TRANSLATE,
        "MMUEXT_PIN_L1_TABLE" => mmuext::PIN_L1_TABLE,
        "MMUEXT_PIN_L4_TABLE" => mmuext::PIN_L4_TABLE,
        "MMUEXT_UNPIN_TABLE" => mmuext::UNPIN_TABLE,
        "MMUEXT_NEW_BASEPTR" => mmuext::NEW_BASEPTR,
        "MMUEXT_TLB_FLUSH_LOCAL" => mmuext::TLB_FLUSH_LOCAL,
        "MMUEXT_INVLPG_LOCAL" => mmuext::INVLPG_LOCAL,
        "MMUEXT_TLB_FLUSH_MULTI" => mmuext::TLB_FLUSH_MULTI,
        "MMUEXT_INVLPG_MULTI" => mmuext::INVLPG_MULTI,
        "MMUEXT_TLB_FLUSH_ALL" => mmuext::TLB_FLUSH_ALL,
        "MMUEXT_INVLPG_ALL" => mmuext::INVLPG_ALL,
        "MMUEXT_NEW_USER_BASEPTR" => mmuext::NEW_USER_BASEPTR,
        "FLAT_KERNEL_CS" => FLAT_KERNEL_CS,
        "FLAT_KERNEL_SS" => FLAT_KERNEL_SS,
        "HYPERVISOR_VIRT_START" => HYPERVISOR_VIRT_START,
        "HYPERVISOR_VIRT_END" => HYPERVISOR_VIRT_END,
        "MACH2PHYS_VIRT_START" => MACH2PHYS_VIRT_START,
        "MACH2PHYS_VIRT_END" => MACH2PHYS_VIRT_END,
        "XEN_LEGACY_MAX_VCPUS" => LEGACY_MAX_VCPUS,
        "MAX_GUEST_CMDLINE" => MAX_GUEST_CMDLINE,
        "SIF_PRIVILEGED" => sif::PRIVILEGED,
        "SIF_INITDOMAIN" => sif::INITDOMAIN,
        "SIF_MOD_START_PFN" => sif::MOD_START_PFN,
        "sizeof(((struct xencons_interface *)0)->in)" => IN_RING_SIZE,
        "sizeof(((struct xencons_interface *)0)->out)" => OUT_RING_SIZE,
    ]);
    facts
}

/// The C program printing each fact's value on its own line, in order.
fn program(facts: &[Fact]) -> String {
    let mut source = String::from(
        "/* Generated by tests/abi_layout.rs */\n\
         #define __XEN_TOOLS__ 1\n\
         #include <stddef.h>\n\
         #include <stdint.h>\n\
         #include <stdio.h>\n\
         #include <xen/xen.h>\n\
         #include <xen/version.h>\n\
         #include <xen/sched.h>\n\
         #include <xen/event_channel.h>\n\
         #include <xen/grant_table.h>\n\
         #include <xen/io/console.h>\n\
         #include <xen/io/xs_wire.h>\n\
         int main(void) {\n",
    );
    for fact in facts {
        source.push_str(&format!(
            "    printf(\"%llu\\n\", (unsigned long long)({}));\n",
            fact.c_expression
        ));
    }
    source.push_str("    return 0;\n}\n");
    source
}

#[test]
fn rust_abi_matches_the_xen_headers() {
    assert!(
        Path::new(HEADERS).join("xen.h").exists(),
        "{HEADERS}/xen.h is missing: install Xen's public headers with `apt-get install libxen-dev` \
         (make test does this through tests/lab/install-packages)"
    );
    let facts = facts();
    let directory =
        std::env::temp_dir().join(format!("grantsvc-abi-layout-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("create a scratch folder");
    let source = directory.join("layout.c");
    let binary = directory.join("layout");
    std::fs::write(&source, program(&facts)).expect("write the C program");
    let compiled = Command::new("gcc")
        .arg("-std=gnu11")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output();
    let compiled = match compiled {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run gcc ({error}): install it and Xen's headers with \
             `apt-get install gcc libxen-dev`"
        ),
    };
    assert!(
        compiled.status.success(),
        "gcc failed on the layout program ({}):\n{}",
        source.display(),
        String::from_utf8_lossy(&compiled.stderr)
    );
    let output = Command::new(&binary)
        .output()
        .expect("run the layout program");
    let _ = std::fs::remove_dir_all(&directory);
    let text = String::from_utf8(output.stdout).expect("the program prints ASCII");
    let c_values: Vec<u64> = text
        .lines()
        .map(|line| line.parse().expect("a number per line"))
        .collect();
    assert_eq!(c_values.len(), facts.len(), "one value per fact");

    let mismatches: Vec<String> = facts
        .iter()
        .zip(&c_values)
        .filter(|(fact, &c_value)| fact.rust_value != c_value)
        .map(|(fact, c_value)| {
            format!(
                "{}: C says {c_value}, Rust says {}",
                fact.label, fact.rust_value
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} ABI facts differ from Xen's headers:\n{}",
        mismatches.len(),
        facts.len(),
        mismatches.join("\n")
    );
}
