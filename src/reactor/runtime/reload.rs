//! SIGHUP: reload the configuration file (SPEC "Process"). Sources and pools added,
//! removed or changed are applied without touching the others; a bad new config is
//! refused with a log line and the old one kept; pause state survives.
//!
//! Sources and pools live in vectors that jobs and timers index, so nothing is ever
//! removed from them: a removed or changed source is *retired* — it stops taking work
//! (unsubscribe / cancel, unstarted AMQP messages handed back), finishes and settles what
//! is in flight, then closes — and a changed one is started again as a new entry with the
//! same name, carrying its counters and pause state over. A retired source's series leave
//! `/metrics`. A pool that disappears is retired once its queue is empty; a changed pool
//! takes its new settings for the next connections.

use std::path::Path;
use std::time::{Duration, Instant};

use log::{error, info};

use super::pools::Pool;
use super::sources::Source;
use super::{Phase, Runtime};
use crate::config::{self, Config};
use crate::reactor::backoff::Backoff;

impl Runtime {
    /// SIGHUP with a configuration file: load, validate, apply.
    pub(super) fn reload(&mut self, path: &Path, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.notify(|n| n.reloading());
        match config::load(path) {
            Ok(new) => {
                let summary = self.apply(new, now);
                info!("SIGHUP: configuration reloaded ({summary})");
            }
            Err(e) => error!("SIGHUP: new configuration refused, the old one stays: {e}"),
        }
        self.notify(|n| n.ready());
    }

    fn apply(&mut self, new: Config, now: Instant) -> String {
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        self.shutdown_timeout = Duration::from_millis(new.shutdown_timeout_ms);
        self.control_token = new.control.token.clone();
        for (name, pool_config) in &new.pools {
            match self
                .pools
                .iter()
                .position(|p| !p.retired && &p.name == name)
            {
                Some(index) if self.pools[index].config != *pool_config => {
                    let address_changed = self.pools[index].config.address != pool_config.address
                        || self.pools[index].config.spawn != pool_config.spawn;
                    self.pools[index].config = pool_config.clone();
                    if address_changed {
                        // Kept connections lead to the old backend: close them. Spawned
                        // workers of the old settings finish their work, then stop.
                        for token in self.pools[index].take_idle_tokens() {
                            self.mark_close(token);
                        }
                        self.retire_processes(index);
                        // Connections in flight now must not come back to the idle list.
                        self.pools[index].generation = self.next_generation();
                        self.pools[index].forget_targets();
                        self.resolve_pool(index, now);
                    }
                    changed += 1;
                }
                Some(_) => {}
                None => {
                    let seed = self.seed ^ (self.pools.len() as u64);
                    self.pools.push(Pool::new(
                        name.clone(),
                        pool_config.clone(),
                        Backoff::new(Duration::from_millis(200), Duration::from_secs(5), seed),
                    ));
                    self.resolve_pool(self.pools.len() - 1, now);
                    added += 1;
                }
            }
        }
        for index in 0..self.sources.len() {
            let source = &self.sources[index];
            if source.retired {
                continue;
            }
            let kept = new
                .sources
                .iter()
                .any(|s| s.name() == source.name && *s == *source.config());
            if !kept {
                self.retire_source(index, now);
                if !new
                    .sources
                    .iter()
                    .any(|s| s.name() == self.sources[index].name)
                {
                    removed += 1;
                }
            }
        }
        for source_config in &new.sources {
            let live = self
                .sources
                .iter()
                .position(|s| !s.retired && s.name == source_config.name());
            if live.is_some() {
                continue;
            }
            let Some(pool) = self
                .pools
                .iter()
                .position(|p| !p.retired && p.name == source_config.job().pool)
            else {
                continue; // validation guarantees the pool exists
            };
            // The entry it replaces (if any) lends its counters and pause state.
            let previous = self
                .sources
                .iter()
                .rposition(|s| s.retired && s.name == source_config.name());
            let seed = self.seed.rotate_left(7) ^ (self.sources.len() as u64);
            let mut source = Source::new(
                source_config.clone(),
                pool,
                Backoff::new(Duration::from_millis(500), Duration::from_secs(30), seed),
            );
            match previous {
                Some(old) => {
                    source.metrics = std::mem::take(&mut self.sources[old].metrics);
                    source.endpoint_metrics =
                        std::mem::take(&mut self.sources[old].endpoint_metrics);
                    source.paused = self.sources[old].paused;
                    changed += 1;
                }
                None => added += 1,
            }
            self.sources.push(source);
            let index = self.sources.len() - 1;
            if let Some(old) = previous {
                // A RESP endpoint that keeps its address keeps its listener and clients.
                self.adopt_endpoint(old, index);
            }
            self.connect_source(index, now);
        }
        for index in 0..self.pools.len() {
            if !self.pools[index].retired && !new.pools.contains_key(&self.pools[index].name) {
                self.pools[index].retired = true;
                removed += 1;
            }
        }
        self.update_fd_budget();
        format!("{added} added, {changed} changed, {removed} removed")
    }

    /// Stops a source taking work; it closes once nothing of it is in flight
    /// ([`Runtime::close_retired_sources`]).
    fn retire_source(&mut self, source: usize, now: Instant) {
        info!(
            "source {}: retired by the reload",
            self.sources[source].name
        );
        self.sources[source].retired = true;
        self.stop_intake(source, now);
    }

    /// Closes retired sources whose work is all settled.
    pub(super) fn close_retired_sources(&mut self, now: Instant) {
        for source in 0..self.sources.len() {
            if !self.sources[source].retired || !self.sources[source].is_open() {
                continue;
            }
            let busy = self.jobs_of(source) + self.sources[source].pending_settles();
            if busy == 0 {
                self.close_source(source, now);
            }
        }
    }

    /// Jobs of `source` still waiting, running or waiting out a retry.
    fn jobs_of(&self, source: usize) -> usize {
        let waiting = self
            .pools
            .iter()
            .map(|p| p.queue.len_of(source))
            .sum::<usize>();
        let running = self
            .slab
            .iter()
            .filter(|(_, e)| {
                matches!(e, super::Endpoint::Worker(w) if w.job.as_ref().is_some_and(|j| j.source == source))
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
