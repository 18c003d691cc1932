//! Reading Xen's grant-table dump (`xl debug-keys g`, then `xl dmesg`) for the grants of one domain that another still pins.
//!
//! Xen 4.17's `gnttab_usage_print` (`common/grant_table.c`) prints, per domain,
//! `grant-table for remote d<N> (v<V>)` and then one line per active entry:
//! `[0x<ref>]  <mapping domid> 0x<mfn> 0x<pin>      <shared domid> 0x<gfn> 0x<flags>`, all inside
//! `gnttab_usage_print_all [ key 'g' pressed` ... `gnttab_usage_print_all ] done`. Only the last
//! complete dump is read; a dump whose start has left Xen's console ring is reported incomplete,
//! never as "nothing pinned".

use grantsvc::ids::{DomId, GrantRef};
use std::process::Command;

const DUMP_START: &str = "gnttab_usage_print_all [ key 'g' pressed";
const DUMP_END: &str = "gnttab_usage_print_all ] done";
const TABLE_START: &str = "grant-table for remote d";

/// One active entry of a grant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    pub grant_ref: GrantRef,
    pub mapper: DomId,
    pub pin: u32,
}

/// Why no answer could be read from the dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpError {
    /// No complete dump in the text (the ring wrapped, or the key was not handled yet).
    Incomplete,
    /// The dump has no table for the granting domain.
    NoTable(DomId),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Incomplete => {
                formatter.write_str("no complete grant-table dump in xl dmesg")
            }
            DumpError::NoTable(domid) => {
                write!(formatter, "no grant table of d{domid} in the dump")
            }
        }
    }
}

fn hex(text: &str) -> Option<u32> {
    u32::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

fn parse_entry(line: &str) -> Option<Pin> {
    let mut words = line
        .split_whitespace()
        .skip_while(|word| !word.starts_with("[0x"));
    let grant_ref = GrantRef::new(hex(words.next()?.strip_prefix('[')?.strip_suffix(']')?)?);
    let mapper = DomId::new(words.next()?.parse().ok()?)?;
    let _frame = words.next()?;
    let pin = hex(words.next()?)?;
    Some(Pin {
        grant_ref,
        mapper,
        pin,
    })
}

/// The active entries of `granter`'s grant table in the last complete dump of `text`.
pub fn active_entries(text: &str, granter: DomId) -> Result<Vec<Pin>, DumpError> {
    let start = text.rfind(DUMP_START).ok_or(DumpError::Incomplete)?;
    let dump = &text[start..];
    let end = dump.find(DUMP_END).ok_or(DumpError::Incomplete)?;
    let dump = &dump[..end];
    let header = format!("{TABLE_START}{granter} ");
    let mut in_table = None;
    for line in dump.lines() {
        if line.contains(TABLE_START) {
            if in_table.is_some() {
                break;
            }
            if line.contains(&header) {
                in_table = Some(Vec::new());
            }
            continue;
        }
        if let (Some(entries), Some(entry)) = (in_table.as_mut(), parse_entry(line)) {
            entries.push(entry);
        }
    }
    in_table.ok_or(DumpError::NoTable(granter))
}

/// Asks Xen for a fresh dump and returns the entries of `granter` pinned by `mapper` among `refs`.
pub fn pinned_now(granter: DomId, mapper: DomId, refs: &[GrantRef]) -> Result<Vec<Pin>, String> {
    let run = |arguments: &[&str]| -> Result<String, String> {
        let output = Command::new("xl")
            .args(arguments)
            .output()
            .map_err(|error| format!("xl {}: {error}", arguments.join(" ")))?;
        if !output.status.success() {
            return Err(format!(
                "xl {} exited with {}",
                arguments.join(" "),
                output.status
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    run(&["debug-keys", "g"])?;
    // The key is handled asynchronously; give Xen a moment, then look for a complete dump.
    let mut last_error = DumpError::Incomplete;
    for _attempt in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        match active_entries(&run(&["dmesg"])?, granter) {
            Ok(entries) => {
                return Ok(entries
                    .into_iter()
                    .filter(|entry| entry.mapper == mapper && refs.contains(&entry.grant_ref))
                    .collect())
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
(XEN) something earlier
(XEN) gnttab_usage_print_all [ key 'g' pressed
(XEN)       -------- active --------       -------- shared --------
(XEN) [ref] localdom mfn      pin          localdom gmfn     flags
(XEN) grant-table for remote d0 (v1)
(XEN)   1 frames (64 max), 0 maptrack frames (1024 max)
(XEN) [0x00a]      5 0x12345 0x00000001          5 0x0abcde 0x19
(XEN) [0x00b]      5 0x12346 0x00000100          5 0x0abcdf 0x09
(XEN) [0x010]      3 0x12347 0x00000001          3 0x0abce0 0x19
(XEN)       -------- active --------       -------- shared --------
(XEN) [ref] localdom mfn      pin          localdom gmfn     flags
(XEN) grant-table for remote d5 (v1)
(XEN)   1 frames (64 max), 1 maptrack frames (1024 max)
(XEN) [0x008]      0 0x22345 0x00000001          0 0x0bbbbb 0x19
(XEN) gnttab_usage_print_all ] done
";

    #[test]
    fn entries_of_one_table_are_read_and_others_ignored() {
        let entries = active_entries(DUMP, DomId::new(0).unwrap()).unwrap();
        assert_eq!(
            entries,
            [
                Pin {
                    grant_ref: GrantRef::new(0xa),
                    mapper: DomId::new(5).unwrap(),
                    pin: 1
                },
                Pin {
                    grant_ref: GrantRef::new(0xb),
                    mapper: DomId::new(5).unwrap(),
                    pin: 0x100
                },
                Pin {
                    grant_ref: GrantRef::new(0x10),
                    mapper: DomId::new(3).unwrap(),
                    pin: 1
                },
            ]
        );
        assert_eq!(
            active_entries(DUMP, DomId::new(5).unwrap()).unwrap().len(),
            1
        );
        assert_eq!(
            active_entries(DUMP, DomId::new(7).unwrap()),
            Err(DumpError::NoTable(DomId::new(7).unwrap()))
        );
    }

    #[test]
    fn an_empty_table_and_timestamps_are_understood() {
        let text = "\
(XEN) [  12.5] gnttab_usage_print_all [ key 'g' pressed
(XEN) [  12.5] grant-table for remote d0 (v1)
(XEN) [  12.5]   1 frames (64 max), 0 maptrack frames (1024 max)
(XEN) [  12.5] no active grant table entries
(XEN) [  12.6] grant-table for remote d5 (v1)
(XEN) [  12.6] [0x008]      0 0x22345 0x00000001          0 0x0bbbbb 0x19
(XEN) [  12.6] gnttab_usage_print_all ] done
";
        assert_eq!(active_entries(text, DomId::new(0).unwrap()), Ok(Vec::new()));
        assert_eq!(
            active_entries(text, DomId::new(5).unwrap()).unwrap()[0].grant_ref,
            GrantRef::new(8)
        );
    }

    #[test]
    fn only_the_last_complete_dump_counts() {
        let older = DUMP.replace("0x00000100", "0x00000001");
        let text = format!(
            "{older}{}",
            DUMP.replace("[0x00a]      5", "[0x00a]      4")
        );
        assert_eq!(
            active_entries(&text, DomId::new(0).unwrap()).unwrap()[0].mapper,
            DomId::new(4).unwrap()
        );
        // A dump still being printed (no end yet) is incomplete, not empty.
        let cut = &DUMP[..DUMP.find("(XEN) [0x00b]").unwrap()];
        assert_eq!(
            active_entries(cut, DomId::new(0).unwrap()),
            Err(DumpError::Incomplete)
        );
        // A dump whose start left the ring is incomplete too.
        let wrapped = &DUMP[DUMP.find("(XEN) [0x00b]").unwrap()..];
        assert_eq!(
            active_entries(wrapped, DomId::new(0).unwrap()),
            Err(DumpError::Incomplete)
        );
    }
}
