//! SIGHUP: a reloaded configuration applied (`docs/SEMANTICS.md`, "Reload"). Sources and
//! pools added, removed or changed are applied without touching the others; a bad new
//! config is refused by the reactor (it never reaches the engine) and the old one kept;
//! pause state survives.
//!
//! A removed or changed source is *retired* — it stops taking work (unsubscribe /
//! cancel, unstarted AMQP messages handed back), finishes and settles what is in flight,
//! then closes — and a changed one is started again as a new entry with the same name,
//! carrying its counters and pause state over. A retired source's series leave
//! `/metrics`. A pool that disappears is retired once its queue is empty; a changed pool
//! takes its new settings for the next connections. Once a retired source has closed,
//! and once a retired pool has no work, no connection and no worker process left, its
//! entry is freed ([`Engine::free_finished_entries`]), so reloads never accumulate
//! entries.

use std::time::{Duration, Instant};

use log::{error, info};

use super::ids::{PoolId, SourceId};
use super::io::{Io, Notice};
use super::sources::{Intake, Link};
use super::{Engine, Peer, Phase, TimerKey};
use crate::config::Config;

impl Engine {
    /// SIGHUP with a configuration file: `new` is what loading it gave (an error keeps
    /// the old configuration).
    pub fn reload(&mut self, new: Result<Config, String>, now: Instant, io: &mut dyn Io) {
        if self.phase != Phase::Running {
            return;
        }
        io.notify(Notice::Reloading);
        match new {
            Ok(new) => {
                let summary = self.apply(&new, now, io);
                info!("SIGHUP: configuration reloaded ({summary})");
            }
            Err(e) => error!("SIGHUP: new configuration refused, the old one stays: {e}"),
        }
        io.notify(Notice::Ready);
    }

    fn apply(&mut self, new: &Config, now: Instant, io: &mut dyn Io) -> String {
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        self.shutdown_timeout = Duration::from_millis(new.shutdown_timeout_ms);
        self.control_token = new.control.token.clone();
        for (name, pool_config) in &new.pools {
            match self.pools.position(|p| !p.retired && &p.name == name) {
                Some(pool) if self.pools[pool].config != *pool_config => {
                    let address_changed = self.pools[pool].config.address != pool_config.address
                        || self.pools[pool].config.spawn != pool_config.spawn;
                    self.pools[pool].config = pool_config.clone();
                    if address_changed {
                        // Kept connections lead to the old backend: close them. Spawned
                        // workers of the old settings finish their work, then stop.
                        for conn in self.pools[pool].take_idle() {
                            self.mark_close(conn);
                        }
                        self.retire_processes(pool);
                        // Connections in flight now must not come back to the idle list.
                        self.pools[pool].generation = self.next_generation();
                        self.pools[pool].address = pool_config.address.clone();
                        self.start_pool(pool, now, io);
                    }
                    changed += 1;
                }
                Some(_) => {}
                None => {
                    let pool = self.add_pool(name, pool_config);
                    self.start_pool(pool, now, io);
                    added += 1;
                }
            }
        }
        for source in self.sources.keys() {
            let s = &self.sources[source];
            if s.is_retired() {
                continue;
            }
            let kept = new
                .sources
                .iter()
                .any(|c| c.name() == s.name && *c == *s.config());
            if !kept {
                let name = s.name.clone();
                self.retire_source(source);
                if !new.sources.iter().any(|c| c.name() == name) {
                    removed += 1;
                }
            }
        }
        for source_config in &new.sources {
            let live = self
                .sources
                .position(|s| !s.is_retired() && s.name == source_config.name());
            if live.is_some() {
                continue;
            }
            // The entry it replaces (if any) lends its counters and pause state.
            let previous = self
                .sources
                .iter()
                .filter(|(_, s)| s.is_retired() && s.name == source_config.name())
                .map(|(id, _)| id)
                .last();
            let Some(source) = self.add_source(source_config) else {
                continue; // validation guarantees the pool exists
            };
            match previous {
                Some(old) => {
                    self.sources[source].metrics = std::mem::take(&mut self.sources[old].metrics);
                    self.sources[source].endpoint_metrics =
                        std::mem::take(&mut self.sources[old].endpoint_metrics);
                    self.sources[source].paused = self.sources[old].paused;
                    // A RESP endpoint that keeps its address keeps its listener and clients.
                    self.adopt_endpoint(old, source);
                    changed += 1;
                }
                None => added += 1,
            }
            self.connect_source(source, now, io);
        }
        for pool in self.pools.keys() {
            if !self.pools[pool].retired && !new.pools.contains_key(&self.pools[pool].name) {
                self.pools[pool].retired = true;
                removed += 1;
            }
        }
        self.update_fd_budget(io);
        format!("{added} added, {changed} changed, {removed} removed")
    }

    /// Stops a source taking work; it closes once nothing of it is in flight
    /// ([`Engine::close_retired_sources`]).
    fn retire_source(&mut self, source: SourceId) {
        info!(
            "source {}: retired by the reload",
            self.sources[source].name
        );
        self.sources[source].intake = Intake::Retired;
        self.stop_intake(source);
    }

    /// Closes retired sources whose work is all settled.
    pub(super) fn close_retired_sources(&mut self, now: Instant) {
        if !self.sources.values().any(|s| s.is_retired()) {
            return; // the common case, every loop turn: nothing to walk
        }
        for source in self.sources.keys() {
            if !self.sources[source].is_retired() || !self.sources[source].is_open() {
                continue;
            }
            let busy = self.jobs_of(source) + self.sources[source].pending_settles();
            if busy == 0 {
                self.close_source(source, now);
            }
        }
    }

    /// Frees the entries of retired sources that closed with nothing left in flight,
    /// and of retired pools with no work, connection, source or worker left.
    pub(super) fn free_finished_entries(&mut self) {
        let retired =
            self.sources.values().any(|s| s.is_retired()) || self.pools.values().any(|p| p.retired);
        if !retired {
            return;
        }
        for source in self.sources.keys() {
            let s = &self.sources[source];
            let done = s.is_retired()
                && matches!(s.link, Link::Stopped)
                && s.server.is_none()
                && s.pending_settles() == 0
                && self.jobs_of(source) == 0;
            if done {
                self.timers.cancel(TimerKey::Source(source));
                self.timers.cancel(TimerKey::Sentinel(source));
                self.dirty_sources.retain(|d| *d != source);
                // Its successor took its counters at the reload; what it counted since,
                // finishing its in-flight work (acks, retries), joins them now, or the
                // source's series would miss those settlements for good.
                let Some(retired) = self.sources.remove(source) else {
                    continue;
                };
                let name = &retired.name;
                if let Some(successor) = self
                    .sources
                    .position(|s| !s.is_retired() && &s.name == name)
                {
                    self.sources[successor].metrics.absorb(&retired.metrics);
                }
            }
        }
        for pool in self.pools.keys() {
            let p = &self.pools[pool];
            let done = p.is_finished()
                && p.spawned.is_none()
                && self.no_retiring_group_of(pool)
                && !self.sources.values().any(|s| s.pool == pool)
                && !self.has_connections(pool);
            if done {
                for key in [
                    TimerKey::Probe(pool),
                    TimerKey::Release(pool),
                    TimerKey::Restart(pool),
                ] {
                    self.timers.cancel(key);
                }
                self.pools.remove(pool);
            }
        }
    }

    /// True while a worker connection of `pool` exists (idle ones included).
    fn has_connections(&self, pool: PoolId) -> bool {
        self.peers
            .iter()
            .any(|(_, p)| matches!(p, Peer::Worker(w) if w.pool == pool))
    }

    /// Jobs of `source` still waiting, running or waiting out a retry.
    fn jobs_of(&self, source: SourceId) -> usize {
        let waiting = self
            .pools
            .values()
            .map(|p| p.queue.len_of(source))
            .sum::<usize>();
        let running = self
            .peers
            .iter()
            .filter(|(_, p)| {
                matches!(p, Peer::Worker(w) if w.job().is_some_and(|j| j.source == source))
            })
            .count();
        let retrying = self
            .retrying
            .values()
            .filter(|j| j.source == source)
            .count();
        waiting + running + retrying
    }
}
