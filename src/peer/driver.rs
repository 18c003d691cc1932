//! The one executor loop: carries a session's actions out through [`Effects`] (which the kernel implements once, over the pmap, event channels and xenstore), feeds each result back to the session, and runs its follow-up actions before the rest.

use super::action::{CloseReason, PeerAction, PeerEvent};
use super::counters::ServiceCounters;
use super::key::SessionKey;
use super::protocol::{PeerSession, Protocol};
use super::registry::{ActionsOf, KeyOf, Registry};
use super::store_limit::StoreRefusal;
use super::value::RemotePort;
use crate::ids::{DomId, EvtchnPort, GrantRef};
use alloc::string::String;
use alloc::vec::Vec;

/// Nodes read for a session, owned: (name, value or `None` for a node that does not exist).
pub type OwnedNodes = Vec<(&'static str, Option<Vec<u8>>)>;

/// What became of nodes to write in one transaction; `A` are the session's actions queued
/// after the write.
#[derive(Debug)]
pub enum InTransaction<A> {
    /// Written: the actions run now.
    Written(A),
    /// In flight: the actions are kept, and run when it commits ([`resume`]).
    InFlight,
    /// Not written (xenstore refused or could not be asked): the actions are dropped.
    Failed,
}

/// What carrying out an action needs from the world, for sessions of protocol `P` holding
/// regions `R`. Every failure is reported as the negative status the session is told.
pub trait Effects<P: Protocol, R> {
    /// Maps `refs` of `peer` contiguously, in one batch.
    fn map(
        &mut self,
        key: SessionKey<P>,
        peer: DomId,
        refs: &[GrantRef],
        writable: bool,
        purpose: P::MapPurpose,
    ) -> Result<R, i32>;
    /// Unmaps `region`; returns the pages unmapped (0 when the unmap failed, which it logs).
    fn unmap(&mut self, key: SessionKey<P>, purpose: P::MapPurpose, region: R) -> usize;
    /// Binds an interdomain channel to `remote_port` of `peer`, unmasked.
    fn bind(
        &mut self,
        key: SessionKey<P>,
        peer: DomId,
        remote_port: RemotePort,
    ) -> Result<EvtchnPort, i32>;
    /// Signals `port`.
    fn notify(&mut self, key: SessionKey<P>, port: EvtchnPort);
    /// Closes `port`.
    fn close_port(&mut self, key: SessionKey<P>, port: EvtchnPort);
    /// Reads `names` of the session's peer directory once. `None`: the answer will come later
    /// (the caller delivers `PeerNodesRead` when it does).
    fn read_peer_nodes(
        &mut self,
        key: SessionKey<P>,
        names: &'static [&'static str],
    ) -> Option<OwnedNodes>;
    /// Writes `nodes` (relative to the session's own directory), in order.
    fn write_nodes(&mut self, key: SessionKey<P>, nodes: Vec<(&'static str, String)>);
    /// Removes `names` of the session's own directory (a missing node is fine).
    fn remove_nodes(&mut self, key: SessionKey<P>, names: Vec<&'static str>);
    /// Writes `nodes` in one transaction, before the session's actions `then` (which must
    /// not run before the nodes are there). The default writes them in order, which is enough
    /// where the readers wait for a `state` node written last.
    fn write_nodes_in_transaction(
        &mut self,
        key: SessionKey<P>,
        nodes: Vec<(&'static str, String)>,
        then: Vec<PeerAction<P, R>>,
    ) -> InTransaction<Vec<PeerAction<P, R>>> {
        self.write_nodes(key, nodes);
        InTransaction::Written(then)
    }
    /// The session connected.
    fn connected(&mut self, key: SessionKey<P>, report: &P::Connected);
    /// The session ended, after `unmapped_pages` pages of it were unmapped in this run.
    fn closed(&mut self, key: SessionKey<P>, reason: &CloseReason<P>, unmapped_pages: usize);
}

/// Carries out `actions` of session `key` in order; answers go back to the session through
/// `registry` and their actions run before the rest.
pub fn drive<S, E>(
    registry: &mut Registry<S>,
    key: KeyOf<S>,
    actions: ActionsOf<S>,
    effects: &mut E,
    counters: &ServiceCounters,
) where
    S: PeerSession,
    E: Effects<S::Protocol, S::Region>,
{
    // The actions still to run, the next one last: a vector used as a stack, whose code is
    // a fraction of a VecDeque's (this loop comes once per protocol, issue 10).
    let mut to_run = actions;
    to_run.reverse();
    let mut unmapped_pages = 0usize;
    while let Some(action) = to_run.pop() {
        let follow_up = match action {
            PeerAction::ReadPeerNodes(names) => match effects.read_peer_nodes(key, names) {
                Some(owned) => {
                    let nodes: Vec<(&'static str, Option<&[u8]>)> = owned
                        .iter()
                        .map(|(name, value)| (*name, value.as_deref()))
                        .collect();
                    registry.handle(key, PeerEvent::PeerNodesRead(&nodes), counters)
                }
                None => Vec::new(),
            },
            PeerAction::WriteNodes(nodes) => {
                effects.write_nodes(key, nodes);
                Vec::new()
            }
            PeerAction::WriteNodesInTransaction(nodes) => {
                // Every action still to run, in order.
                let mut then = core::mem::take(&mut to_run);
                then.reverse();
                match effects.write_nodes_in_transaction(key, nodes, then) {
                    InTransaction::Written(mut then) => {
                        then.reverse();
                        to_run = then;
                        Vec::new()
                    }
                    // The session waits; `resume` carries on when the transaction ends.
                    InTransaction::InFlight => Vec::new(),
                    // What the session queued after the write (its `state`, its report)
                    // assumed the write: it decides again, from the failure.
                    InTransaction::Failed => {
                        let refusal = StoreRefusal::transaction_failed();
                        registry.handle(key, PeerEvent::OwnNodesNotWritten(refusal), counters)
                    }
                }
            }
            PeerAction::RemoveNodes(names) => {
                effects.remove_nodes(key, names);
                Vec::new()
            }
            PeerAction::MapGrants {
                peer,
                refs,
                writable,
                purpose,
            } => {
                let result = effects.map(key, peer, &refs, writable, purpose);
                registry.handle(key, PeerEvent::Mapped { purpose, result }, counters)
            }
            PeerAction::BindInterdomain { peer, remote_port } => {
                let result = effects.bind(key, peer, remote_port);
                registry.handle(key, PeerEvent::PortBound(result), counters)
            }
            PeerAction::Unmap { purpose, region } => {
                unmapped_pages += effects.unmap(key, purpose, region);
                Vec::new()
            }
            PeerAction::Notify(port) => {
                effects.notify(key, port);
                Vec::new()
            }
            PeerAction::ClosePort(port) => {
                effects.close_port(key, port);
                Vec::new()
            }
            PeerAction::ReportConnected(report) => {
                effects.connected(key, &report);
                Vec::new()
            }
            PeerAction::ReportClosed(reason) => {
                effects.closed(key, &reason, unmapped_pages);
                Vec::new()
            }
        };
        // Answers' actions run before the rest, in their order.
        to_run.extend(follow_up.into_iter().rev());
    }
}

/// Carries on after session `key`'s transaction in flight ended: runs the actions kept for
/// after it (`Ok`: it committed), or tells the session its nodes were not written (`Err`).
pub fn resume<S, E>(
    registry: &mut Registry<S>,
    key: KeyOf<S>,
    committed: Result<ActionsOf<S>, ()>,
    effects: &mut E,
    counters: &ServiceCounters,
) where
    S: PeerSession,
    E: Effects<S::Protocol, S::Region>,
{
    match committed {
        Ok(then) => drive(registry, key, then, effects, counters),
        Err(()) => deliver(
            registry,
            key,
            PeerEvent::OwnNodesNotWritten(StoreRefusal::transaction_failed()),
            effects,
            counters,
        ),
    }
}

/// Delivers `event` to session `key` and carries out what it asks.
pub fn deliver<S, E>(
    registry: &mut Registry<S>,
    key: KeyOf<S>,
    event: PeerEvent<'_, S::Protocol, S::Region>,
    effects: &mut E,
    counters: &ServiceCounters,
) where
    S: PeerSession,
    E: Effects<S::Protocol, S::Region>,
{
    let actions = registry.handle(key, event, counters);
    drive(registry, key, actions, effects, counters);
}

#[cfg(test)]
mod tests;
