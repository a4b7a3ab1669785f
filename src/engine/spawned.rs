//! Spawned pools (`docs/SEMANTICS.md`, "Spawned pools": a pool with `spawn` instead
//! of `address`): ferry binds the socket, keeps `processes` workers running on it,
//! restarts those that end, and stops them all on shutdown. The reactor makes the system
//! calls (`crate::process::spawn`) when the engine asks through [`Io`]; this module
//! decides *when*.
//!
//! A spawned pool is otherwise an ordinary pool: its target is the socket ferry bound,
//! and jobs go through the same worker connections, timeouts, retries, `keep_conn` and
//! circuit breaker as an `address` pool. Two things are added:
//! - **No process, no work.** The socket accepts connections even when no worker runs
//!   (they wait in the listen backlog), so a connect proves nothing. When the last
//!   worker is gone and the next start is backed off, the circuit opens
//!   (`ferry_pool_failures_total{reason="no_process"}`); a worker that starts schedules
//!   a probe at once.
//! - **Restarts.** SIGCHLD comes through the reactor's signal pipe; every worker is then
//!   polled ([`Io::reap_worker`]: signals coalesce). A worker that ran at least
//!   [`HEALTHY_UPTIME`] is replaced at once; so is one that exited 0 after the pool
//!   finished jobs since it started (a `max_requests` recycle), but at most once per
//!   [`HEALTHY_UPTIME`] per slot — "the pool worked" cannot tell a recycle from a
//!   worker that exits 0 at once while the others serve. One that dies young again and again
//!   waits out a jittered exponential backoff per slot ([`RESTART_INITIAL`] doubling to
//!   [`RESTART_MAX`]), so a broken command never spins. Every end is logged with its
//!   exit status or signal; what is left of the worker's process group is killed.
//! - **Stopping.** On shutdown, after the drain (no request in flight), every worker's
//!   group gets SIGTERM; those still there after `min(shutdown_timeout_ms, 5 s)` get
//!   SIGKILL and are reaped; ferry exits only then. A second signal kills and reaps at
//!   once. A reload that changes a pool's `spawn` (or removes the pool) starts a new
//!   *generation* of workers on a new socket and stops the old generation the same way
//!   once no connection of the pool uses it any more.
//!
//! Generations: every group of workers has a number, and a worker connection remembers
//! the generation of the socket it connected to, so a retiring group is stopped only when
//! none of its connections is left.

use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::backoff::Backoff;
use super::ids::PoolId;
use super::io::{Io, ProcessSignal, SocketKey};
use super::{Engine, Peer, Phase, TimerKey};
use crate::config::{Address, SpawnConfig};
use crate::dispatch::outcome::PoolFailureReason;

/// A worker that ran this long is healthy: replaced at once when it ends.
pub(super) const HEALTHY_UPTIME: Duration = Duration::from_secs(1);
/// First delay before starting again a worker that died young.
pub(super) const RESTART_INITIAL: Duration = Duration::from_millis(200);
/// Longest delay between restarts of a worker that keeps dying young.
pub(super) const RESTART_MAX: Duration = Duration::from_secs(10);
/// Longest wait between SIGTERM and SIGKILL (shorter when `shutdown_timeout_ms` is).
const STOP_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// A running worker.
struct Running {
    pid: u32,
    started_at: Instant,
    /// The pool's finished jobs when it started (did the pool work while it lived?).
    jobs_at_start: u64,
}

/// One of the `processes` places of a group.
struct Slot {
    running: Option<Running>,
    backoff: Backoff,
    /// When a backed-off restart is due.
    restart_at: Option<Instant>,
    /// When this slot's worker last was replaced at once although it died young (a
    /// recycle); see [`Runtime::reap_slot`].
    quick_restart_at: Option<Instant>,
}

/// The workers of one spawned pool for one version of its `spawn` settings, and their
/// socket. A group that is let go of is released ([`Group::release`]): what is left of
/// it is killed and reaped and its socket closed. (The reactor also kills and reaps every
/// worker it still holds when it ends, so an early exit leaves no orphan.)
pub(super) struct Group {
    pub generation: u64,
    config: SpawnConfig,
    socket: SocketKey,
    slots: Vec<Slot>,
    /// SIGTERM sent: never restarted; SIGKILL at this instant.
    kill_at: Option<Instant>,
}

impl Group {
    /// Live workers.
    pub fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.running.is_some()).count()
    }

    /// Pids of the live workers.
    pub fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|s| s.running.as_ref().map(|r| r.pid))
            .collect()
    }

    /// The configured number of workers.
    pub fn configured(&self) -> u32 {
        self.config.processes
    }

    /// Sends `signal` to every live worker's process group.
    fn signal_all(&self, signal: ProcessSignal, io: &mut dyn Io) {
        for running in self.slots.iter().filter_map(|s| s.running.as_ref()) {
            if let Err(e) = io.signal_worker(running.pid, signal) {
                warn!("cannot send {signal:?} to process {}: {e}", running.pid);
            }
        }
    }

    /// SIGKILL to every live worker's group, then waits for each (SIGKILL cannot be
    /// caught or ignored: the wait is short). Returns the pids killed.
    fn kill_and_reap(&mut self, io: &mut dyn Io) -> Vec<u32> {
        let mut killed = Vec::new();
        for slot in &mut self.slots {
            if let Some(running) = slot.running.take() {
                io.kill_worker(running.pid);
                killed.push(running.pid);
            }
        }
        killed
    }

    /// Lets go of the group: kills what is left of it and closes its socket.
    fn release(mut self, io: &mut dyn Io) {
        self.kill_and_reap(io);
        io.release_worker_socket(self.socket);
    }
}

/// Spawned-pool state shared by every pool: the socket directory and the groups that a
/// reload replaced or removed.
#[derive(Default)]
pub(super) struct Processes {
    /// Groups being retired: (pool, group).
    retiring: Vec<(PoolId, Group)>,
    next_generation: u64,
    /// Shutdown: every group got SIGTERM; nothing restarts any more.
    stopping: bool,
    /// SIGCHLD arrived: reap at the end of the loop turn.
    reap_pending: bool,
}

impl Processes {
    /// SIGCHLD arrived: reap at the end of the loop turn.
    pub fn note_sigchld(&mut self) {
        self.reap_pending = true;
    }
}

impl Engine {
    /// Binds a spawned pool's socket and starts its workers. A bind failure is a pool
    /// failure: the circuit opens and the probe timer tries again.
    pub(super) fn start_spawned_pool(&mut self, pool: PoolId, now: Instant, io: &mut dyn Io) {
        if self.processes_stopping() {
            // A bind retry that comes due after the workers were told to stop would
            // start a group nobody stops: ferry would never exit.
            return;
        }
        let Some(config) = self.pools[pool].config.spawn.clone() else {
            return;
        };
        let socket = match io.bind_worker_socket(&self.pools[pool].name, config.listen.as_ref()) {
            Ok(socket) => socket,
            Err(e) => {
                warn!(
                    "pool {}: cannot bind the workers' socket: {e}",
                    self.pools[pool].name
                );
                self.open_circuit(pool, "cannot bind the workers' socket", now);
                return;
            }
        };
        let generation = self.next_generation();
        let seed = self.seed.rotate_left(13) ^ (pool.0 as u64) << 16 ^ generation;
        let slots = (0..config.processes)
            .map(|n| Slot {
                running: None,
                backoff: Backoff::new(RESTART_INITIAL, RESTART_MAX, seed ^ u64::from(n)),
                restart_at: None,
                quick_restart_at: None,
            })
            .collect();
        let on = match &socket.address {
            Address::Unix(path) => format!("unix:{}", path.display()),
            Address::Tcp { host, port } => format!("tcp:{host}:{port}"),
        };
        info!(
            "pool {}: starting {} processes of {:?} on {on}",
            self.pools[pool].name, config.processes, config.command
        );
        self.pools[pool].address = Some(socket.address);
        self.pools[pool].generation = generation;
        if let Some(old) = self.pools[pool].spawned.replace(Group {
            generation,
            config,
            socket: socket.key,
            slots,
            kill_at: None,
        }) {
            old.release(io);
        }
        let count = self.pools[pool]
            .spawned
            .as_ref()
            .map_or(0, |g| g.slots.len());
        for slot in 0..count {
            self.start_process(pool, slot, now, io);
        }
    }

    /// A generation number never used before (see [`super::pools::Pool::generation`]).
    pub(super) fn next_generation(&mut self) -> u64 {
        self.spawned.next_generation += 1;
        self.spawned.next_generation
    }

    /// True once ferry is closing (every source closed or closing) or its workers were
    /// told to stop: from then on no group and no worker process starts, or it would
    /// never get its SIGTERM.
    fn processes_stopping(&self) -> bool {
        self.spawned.stopping || matches!(self.phase, Phase::Closing { .. })
    }

    /// Starts the worker of `slot`; a failure to start counts as a death at once.
    fn start_process(&mut self, pool: PoolId, slot: usize, now: Instant, io: &mut dyn Io) {
        if self.processes_stopping() {
            return;
        }
        let jobs_at_start = self.pools[pool].metrics.job_duration().count();
        let p = &mut self.pools[pool];
        let Some(group) = p.spawned.as_mut() else {
            return;
        };
        match io.spawn_worker(
            &group.config.command,
            group.socket,
            group.config.max_requests,
        ) {
            Ok(pid) => {
                debug!("pool {}: started process {pid}", p.name);
                if let Some(s) = group.slots.get_mut(slot) {
                    s.running = Some(Running {
                        pid,
                        started_at: now,
                        jobs_at_start,
                    });
                    s.restart_at = None;
                }
                // A worker runs again: let the probe find out now.
                self.probe_now(pool, now);
            }
            Err(e) => {
                warn!(
                    "pool {}: cannot start {:?}: {e}",
                    p.name,
                    group.config.command.first().map_or("", String::as_str)
                );
                self.schedule_restart(pool, slot, now);
            }
        }
    }

    /// Backs off the restart of `slot`; with no worker left, the pool has failed.
    fn schedule_restart(&mut self, pool: PoolId, slot: usize, now: Instant) {
        let p = &mut self.pools[pool];
        let Some(group) = p.spawned.as_mut() else {
            return;
        };
        let Some(s) = group.slots.get_mut(slot) else {
            return;
        };
        let delay = s.backoff.next_delay();
        s.restart_at = Some(now + delay);
        info!(
            "pool {}: next start of a process in {} ms",
            p.name,
            delay.as_millis()
        );
        self.arm_restart_timer(pool);
        self.open_circuit_without_workers(pool, now);
    }

    /// A spawned pool's socket accepts connections even with no worker behind it, so a
    /// connect proves nothing: with none running, the circuit opens (`no_process`).
    /// Returns whether it did.
    pub(super) fn open_circuit_without_workers(&mut self, pool: PoolId, now: Instant) -> bool {
        let no_worker = self.pools[pool]
            .spawned
            .as_ref()
            .is_some_and(|g| g.live() == 0);
        if no_worker {
            self.pools[pool]
                .metrics
                .on_failure(PoolFailureReason::NoProcess);
            self.open_circuit(pool, "no worker process running", now);
        }
        no_worker
    }

    fn arm_restart_timer(&mut self, pool: PoolId) {
        let next = self.pools[pool]
            .spawned
            .as_ref()
            .and_then(|g| g.slots.iter().filter_map(|s| s.restart_at).min());
        match next {
            Some(at) => self.timers.arm(TimerKey::Restart(pool), at),
            None => self.timers.cancel(TimerKey::Restart(pool)),
        }
    }

    /// Backed-off restarts that are due.
    pub(super) fn on_restart_timer(&mut self, pool: PoolId, now: Instant, io: &mut dyn Io) {
        if self.processes_stopping() {
            return;
        }
        let due: Vec<usize> = self.pools[pool]
            .spawned
            .as_ref()
            .map(|g| {
                (0..g.slots.len())
                    .filter(|&n| {
                        g.slots.get(n).is_some_and(|s| {
                            s.running.is_none() && s.restart_at.is_some_and(|at| at <= now)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        for slot in due {
            self.pools[pool].metrics.on_process_restart();
            self.start_process(pool, slot, now, io);
        }
        self.arm_restart_timer(pool);
    }

    /// Reaps every worker that ended, and replaces it (see the module docs).
    fn reap_processes(&mut self, now: Instant, io: &mut dyn Io) {
        for pool in self.pools.keys() {
            let slots = self.pools[pool]
                .spawned
                .as_ref()
                .map_or(0, |g| g.slots.len());
            for slot in 0..slots {
                self.reap_slot(pool, slot, now, io);
            }
        }
        for (pool, group) in &mut self.spawned.retiring {
            let name = self.pools.get(*pool).map_or("", |p| p.name.as_str());
            for slot in &mut group.slots {
                let Some(running) = slot.running.as_mut() else {
                    continue;
                };
                if let Ok(Some(exit)) = io.reap_worker(running.pid) {
                    info!(
                        "pool {name}: retired process {} {}",
                        running.pid, exit.description
                    );
                    slot.running = None;
                }
            }
        }
        self.release_finished_groups(io);
    }

    /// A retired group with no worker left is done: its socket goes with it.
    fn release_finished_groups(&mut self, io: &mut dyn Io) {
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.spawned.retiring)
            .into_iter()
            .partition(|(_, group)| group.live() == 0);
        self.spawned.retiring = kept;
        for (_, group) in done {
            group.release(io);
        }
    }

    fn reap_slot(&mut self, pool: PoolId, slot: usize, now: Instant, io: &mut dyn Io) {
        let closing = self.processes_stopping();
        let p = &mut self.pools[pool];
        let jobs_now = p.metrics.job_duration().count();
        let Some(group) = p.spawned.as_mut() else {
            return;
        };
        let stopping = closing || group.kill_at.is_some();
        let Some(s) = group.slots.get_mut(slot) else {
            return;
        };
        let Some(running) = s.running.as_mut() else {
            return;
        };
        let pid = running.pid;
        // Whatever the worker forked dies with it: the reactor kills its group while it
        // is a zombie, before reaping it (then its pid could name another group).
        let exit = match io.reap_worker(pid) {
            Ok(Some(exit)) => exit,
            Ok(None) => return,
            Err(e) => {
                warn!("pool {}: cannot wait for process {pid}: {e}", p.name);
                return;
            }
        };
        let lived = now.saturating_duration_since(running.started_at);
        let worked = jobs_now > running.jobs_at_start;
        s.running = None;
        let how = &exit.description;
        let lived_s = lived.as_secs_f64();
        if stopping {
            info!("pool {}: process {pid} {how} after {lived_s:.1}s", p.name);
            return;
        }
        let line = format!(
            "pool {}: process {pid} {how} after {lived_s:.1}s; restarting",
            p.name
        );
        if exit.success {
            info!("{line}");
        } else {
            warn!("{line}");
        }
        // "The pool finished jobs while it lived" is pool-wide: it cannot tell a
        // recycled worker from one that exits 0 at once while the other slots work. So
        // a young clean exit is replaced at once at most once per HEALTHY_UPTIME per
        // slot; more often, it waits out the backoff like any young death.
        let quick_allowed = s
            .quick_restart_at
            .is_none_or(|at| now.saturating_duration_since(at) >= HEALTHY_UPTIME);
        let recycled = exit.success && worked && quick_allowed;
        if lived >= HEALTHY_UPTIME || recycled {
            if lived < HEALTHY_UPTIME {
                s.quick_restart_at = Some(now);
            }
            s.backoff.reset();
            p.metrics.on_process_restart();
            self.start_process(pool, slot, now, io);
        } else {
            self.schedule_restart(pool, slot, now);
        }
    }

    /// How long a worker gets between SIGTERM and SIGKILL.
    fn stop_timeout(&self) -> Duration {
        self.shutdown_timeout.min(STOP_TIMEOUT_MAX)
    }

    /// Shutdown, after the drain: true once no worker is left. The first call sends
    /// SIGTERM to every worker's group and arms the SIGKILL deadline.
    pub(super) fn processes_stopped(&mut self, now: Instant, io: &mut dyn Io) -> bool {
        let live = self.live_processes();
        if live == 0 {
            return true;
        }
        if !self.spawned.stopping {
            self.spawned.stopping = true;
            let timeout = self.stop_timeout();
            info!(
                "stopping {live} worker processes (SIGTERM; SIGKILL after {} ms)",
                timeout.as_millis()
            );
            let kill_at = now + timeout;
            for pool in self.pools.keys() {
                self.timers.cancel(TimerKey::Restart(pool));
                if let Some(group) = self.pools[pool].spawned.as_mut() {
                    group.signal_all(ProcessSignal::Terminate, io);
                    group.kill_at = Some(kill_at);
                }
            }
            for (_, group) in &mut self.spawned.retiring {
                if group.kill_at.is_none() {
                    group.signal_all(ProcessSignal::Terminate, io);
                    group.kill_at = Some(kill_at);
                }
            }
            self.arm_stop_timer();
        }
        false
    }

    /// Live workers of every group, retiring ones included.
    fn live_processes(&self) -> usize {
        let current: usize = self
            .pools
            .values()
            .filter_map(|p| p.spawned.as_ref())
            .map(Group::live)
            .sum();
        let retiring: usize = self.spawned.retiring.iter().map(|(_, g)| g.live()).sum();
        current + retiring
    }

    fn arm_stop_timer(&mut self) {
        let next = self
            .pools
            .values()
            .filter_map(|p| p.spawned.as_ref())
            .chain(self.spawned.retiring.iter().map(|(_, g)| g))
            .filter(|g| g.live() > 0)
            .filter_map(|g| g.kill_at)
            .min();
        match next {
            Some(at) => self.timers.arm(TimerKey::StopProcesses, at),
            None => self.timers.cancel(TimerKey::StopProcesses),
        }
    }

    /// The SIGKILL deadline of stopping groups.
    pub(super) fn on_stop_processes_timer(&mut self, now: Instant, io: &mut dyn Io) {
        let timeout = self.stop_timeout();
        let due = |group: &Group| group.kill_at.is_some_and(|at| at <= now);
        for p in self.pools.values_mut() {
            if let Some(group) = p.spawned.as_mut().filter(|g| due(g)) {
                for pid in group.kill_and_reap(io) {
                    warn!(
                        "pool {}: process {pid} still ran {} ms after SIGTERM; killed",
                        p.name,
                        timeout.as_millis()
                    );
                }
            }
        }
        for (pool, group) in self.spawned.retiring.iter_mut().filter(|(_, g)| due(g)) {
            let name = self.pools.get(*pool).map_or("", |p| p.name.as_str());
            for pid in group.kill_and_reap(io) {
                warn!(
                    "pool {name}: retired process {pid} still ran {} ms after SIGTERM; killed",
                    timeout.as_millis()
                );
            }
        }
        self.release_finished_groups(io);
        self.arm_stop_timer();
    }

    /// A second signal: kill and reap every worker now.
    pub(super) fn kill_processes(&mut self, io: &mut dyn Io) {
        self.spawned.stopping = true;
        for p in self.pools.values_mut() {
            if let Some(group) = p.spawned.as_mut() {
                let killed = group.kill_and_reap(io);
                if !killed.is_empty() {
                    warn!("pool {}: killed processes {killed:?}", p.name);
                }
            }
        }
        for (_, group) in std::mem::take(&mut self.spawned.retiring) {
            group.release(io);
        }
    }

    /// A reload changed the pool's `spawn` (or `address`), or removed it: its workers
    /// retire and are stopped once no connection uses them
    /// ([`Engine::tend_processes`]).
    pub(super) fn retire_processes(&mut self, pool: PoolId) {
        self.timers.cancel(TimerKey::Restart(pool));
        if let Some(group) = self.pools[pool].spawned.take() {
            info!(
                "pool {}: processes {:?} retire once their work is done",
                self.pools[pool].name,
                group.pids()
            );
            self.spawned.retiring.push((pool, group));
        }
    }

    /// Once per loop turn: reaps after a SIGCHLD, retires the workers of a removed pool
    /// that finished its work, and sends SIGTERM to retiring groups no connection uses
    /// any more.
    pub(super) fn tend_processes(&mut self, now: Instant, io: &mut dyn Io) {
        if std::mem::take(&mut self.spawned.reap_pending) {
            self.reap_processes(now, io);
        }
        let done = |p: &super::pools::Pool| p.is_finished() && p.spawned.is_some();
        if self.pools.values().any(done) {
            for pool in self.pools.keys() {
                if !done(&self.pools[pool]) {
                    continue;
                }
                for conn in self.pools[pool].take_idle() {
                    self.mark_close(conn);
                }
                self.retire_processes(pool);
            }
        }
        if self.spawned.retiring.is_empty() {
            return;
        }
        let kill_at = now + self.stop_timeout();
        let mut armed = false;
        for index in 0..self.spawned.retiring.len() {
            let Some((pool, group)) = self.spawned.retiring.get(index) else {
                continue;
            };
            if group.kill_at.is_some() {
                continue;
            }
            let (pool, generation) = (*pool, group.generation);
            let in_use = self.peers.iter().any(|(key, peer)| {
                matches!(peer, Peer::Worker(w) if w.pool == pool && w.generation == generation)
                    && !self.to_close.contains(&super::io::ConnId(key))
            });
            if in_use {
                continue;
            }
            if let Some((_, group)) = self.spawned.retiring.get_mut(index) {
                group.signal_all(ProcessSignal::Terminate, io);
                group.kill_at = Some(kill_at);
                armed = true;
            }
        }
        self.release_finished_groups(io);
        if armed {
            self.arm_stop_timer();
        }
    }

    /// True when no retiring group of workers still belongs to `pool`.
    pub(super) fn no_retiring_group_of(&self, pool: PoolId) -> bool {
        !self.spawned.retiring.iter().any(|(p, _)| *p == pool)
    }
}
