//! grant-share: a xenbus split device through which a peer grants grantsvc pages to map, check and answer.
//!
//! It is the protocol of the Xen lab's `peer-grants` and `peer-death` scenarios and of the dom0
//! tool `grantsvc-peer share` (tests/peer). The frontend is the domain granting the pages (the
//! dom0 tool, or a peer domU); the backend is grantsvc.
//!
//! # Nodes
//! Frontend directory `/local/domain/<frontend>/device/grantsvc-share/<devid>/` (owned by the
//! frontend, readable by the backend), written by the frontend:
//! - `backend`: the backend directory's path; `backend-id`: grantsvc's domid;
//! - `nr-pages`: `1..=256` ([`nodes::MAX_PAGES`]);
//! - `refs`: exactly `nr-pages` decimal grant refs separated by single spaces, page 0 first;
//! - `event-channel`: a port the frontend allocated unbound for the backend;
//! - `pattern-seed`: a decimal `u32`; the pages hold the pattern of [`pattern`] for that seed;
//! - `writable`: `1` when the refs were granted writable, else `0`;
//! - `state`: the frontend's xenbus state.
//!
//! Backend directory `/local/domain/<grantsvc>/backend/grantsvc-share/<frontend>/<devid>/`
//! (owned by grantsvc, readable by the frontend): `frontend`, `frontend-id` (written by the
//! toolstack, or by the dom0 tool acting as one), and written by grantsvc: `state`;
//! `mapped-pages` (pages grantsvc maps now); `pattern` (`ok` or `mismatch at page P byte B`);
//! `digest` (CRC-32 of the pages as read, 8 hex digits); `answer` (`written`,
//! `none read-only` or `none pattern-mismatch`); `error` (why a session was ended for a fault).
//!
//! Every number is plain decimal ASCII, as Xen's tools write it; anything else is a fault.
//!
//! # Steps (xenbus states, `public/io/xenbus.h`)
//! 1. The toolstack creates both directories, with `state` = Initialising (1) in each.
//! 2. grantsvc (watching `<home>/backend/grantsvc-share`) opens a session for the new device and
//!    writes `state` = InitWait (2).
//! 3. The frontend grants the pages, fills them with the pattern, allocates the port, writes its
//!    nodes, then `state` = Initialised (3).
//! 4. grantsvc reads the frontend's nodes once and validates them all (a bad value ends the
//!    session: `error` is written, `state` = Closed (6), nothing stays mapped); maps all refs in
//!    one batch at addresses it chooses; binds the port; copies each page once, checks it
//!    against the pattern and digests it; when the pages are writable and matched, writes the
//!    answer (see [`pattern`]); writes the results and `state` = Connected (4); signals the port.
//! 5. The frontend checks the results and the answer through its own mapping, then revokes:
//!    `state` = Closing (5) (or it removes its directory, or its domain dies).
//! 6. grantsvc unmaps every page first, then closes the port, then writes `mapped-pages` = 0
//!    and `state` = Closed (6). After a death, or when the backend directory is gone, it writes
//!    nothing.
//!
//! # Using it from the kernel
//! Keep a [`registry::ShareRegistry`]; watch [`nodes::backend_root`] of grantsvc's home and map
//! each fired path to a device with [`nodes::device_of_backend_path`]; for a new device
//! [`registry::open_device`] it and watch its frontend's `state` node
//! ([`nodes::frontend_path`]); feed [`session::ShareEvent`]s and carry out the returned
//! [`session::ShareAction`]s through the framework's executor loop ([`crate::peer::driver`]);
//! node writes are relative to [`nodes::backend_path`], reads to [`nodes::frontend_path`].

pub mod fault;
pub mod nodes;
pub mod pattern;
pub mod protocol;
pub mod registry;
pub mod session;
