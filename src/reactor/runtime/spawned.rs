//! Spawned pools in the running daemon (SPEC "Embedded deployment": a pool with `spawn`
//! instead of `address`): ferry binds the socket, keeps `processes` workers running on
//! it, restarts those that end, and stops them all on shutdown. The system calls are in
//! `process::spawn`; this module decides *when*.
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
//!   polled with `waitpid(pid, WNOHANG)` (signals coalesce). A worker that ran at least
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

use std::process::Child;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use nix::sys::signal::Signal;

use super::{Endpoint, Phase, Runtime, TimerKey};
use crate::config::{Address, SpawnConfig};
use crate::dispatch::outcome::PoolFailureReason;
use crate::process::spawn::{self, PoolSocket, SocketAddress, SocketDir};
use crate::reactor::backoff::Backoff;
use crate::reactor::connect::Target;

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
    child: Child,
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
/// socket. Dropping a group kills and reaps what is left of it (an early return from the
/// loop must not leave orphans), then removes its socket file.
pub(super) struct Group {
    pub generation: u64,
    config: SpawnConfig,
    socket: PoolSocket,
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
            .filter_map(|s| s.running.as_ref().map(|r| r.child.id()))
            .collect()
    }

    /// The configured number of workers.
    pub fn configured(&self) -> u32 {
        self.config.processes
    }

    /// Sends `signal` to every live worker's process group.
    fn signal_all(&self, signal: Signal) {
        for running in self.slots.iter().filter_map(|s| s.running.as_ref()) {
            if let Err(e) = spawn::signal_group(running.child.id(), signal) {
                warn!(
                    "cannot send {signal} to process {}: {e}",
                    running.child.id()
                );
            }
        }
    }

    /// SIGKILL to every live worker's group, then waits for each. The wait blocks the
    /// loop, which is acceptable only because SIGKILL cannot be caught or ignored: the
    /// kernel ends the process at once (a worker stuck in uninterruptible I/O — a dead
    /// NFS mount — is the one case that would hold ferry here, and nothing else could
    /// free it either). Killed before reaped, so the group id cannot have been reused.
    /// Returns the pids killed.
    fn kill_and_reap(&mut self) -> Vec<u32> {
        let mut killed = Vec::new();
        for slot in &mut self.slots {
            if let Some(mut running) = slot.running.take() {
                let pid = running.child.id();
                let _ = spawn::signal_group(pid, Signal::SIGKILL);
                let _ = running.child.wait();
                killed.push(pid);
            }
        }
        killed
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Spawned-pool state shared by every pool: the socket directory and the groups that a
/// reload replaced or removed.
#[derive(Default)]
pub(super) struct Processes {
    /// Groups being retired: (pool, group). Declared before `dir`: dropped first.
    retiring: Vec<(usize, Group)>,
    /// The private directory of default sockets, created with the first such pool.
    dir: Option<SocketDir>,
    next_generation: u64,
    /// Shutdown: every group got SIGTERM; nothing restarts any more.
    stopping: bool,
    /// SIGCHLD arrived: reap at the end of the loop turn.
    reap_pending: bool,
}

impl Runtime {
    /// Binds a spawned pool's socket and starts its workers (from `resolve_pool`). A bind
    /// failure is a pool failure: the circuit opens and the probe timer tries again.
    pub(super) fn start_spawned_pool(&mut self, pool: usize, now: Instant) {
        if self.processes_stopping() {
            // A bind retry that comes due after the workers were told to stop would
            // start a group nobody stops: ferry would never exit.
            return;
        }
        let Some(config) = self.pools[pool].config.spawn.clone() else {
            return;
        };
        let socket = match self.bind_pool_socket(pool, &config) {
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
        let target = match socket.address() {
            SocketAddress::Unix(path) => Target::Unix(path.clone()),
            SocketAddress::Tcp(addr) => Target::Tcp(*addr),
        };
        let generation = self.next_generation();
        let seed = self.seed.rotate_left(13) ^ (pool as u64) << 16 ^ generation;
        let slots = (0..config.processes)
            .map(|n| Slot {
                running: None,
                backoff: Backoff::new(RESTART_INITIAL, RESTART_MAX, seed ^ u64::from(n)),
                restart_at: None,
                quick_restart_at: None,
            })
            .collect();
        info!(
            "pool {}: starting {} processes of {:?} on {}",
            self.pools[pool].name,
            config.processes,
            config.command,
            describe_target(&target)
        );
        self.pools[pool].targets = Some(vec![target]);
        self.pools[pool].generation = generation;
        self.pools[pool].spawned = Some(Group {
            generation,
            config,
            socket,
            slots,
            kill_at: None,
        });
        let count = self.pools[pool]
            .spawned
            .as_ref()
            .map_or(0, |g| g.slots.len());
        for slot in 0..count {
            self.start_process(pool, slot, now);
        }
    }

    /// A generation number never used before (see [`super::pools::Pool::generation`]).
    pub(super) fn next_generation(&mut self) -> u64 {
        self.spawned.next_generation += 1;
        self.spawned.next_generation
    }

    fn bind_pool_socket(
        &mut self,
        pool: usize,
        config: &SpawnConfig,
    ) -> std::io::Result<PoolSocket> {
        match &config.listen {
            Some(Address::Unix(path)) => PoolSocket::bind_unix(path),
            Some(Address::Tcp { host, port }) => {
                let ip: std::net::IpAddr = host.parse().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{host} is not an IP address"),
                    )
                })?;
                PoolSocket::bind_tcp((ip, *port).into())
            }
            None => {
                if self.spawned.dir.is_none() {
                    let dir = SocketDir::create()?;
                    info!("spawned pools' sockets in {}", dir.path().display());
                    self.spawned.dir = Some(dir);
                }
                let dir = self
                    .spawned
                    .dir
                    .as_ref()
                    .ok_or_else(|| std::io::Error::other("no socket directory"))?;
                PoolSocket::bind_unix(&dir.socket_path(&self.pools[pool].name))
            }
        }
    }

    /// True once ferry is closing (every source closed or closing) or its workers were
    /// told to stop: from then on no group and no worker process starts, or it would
    /// never get its SIGTERM.
    fn processes_stopping(&self) -> bool {
        self.spawned.stopping || matches!(self.phase, Phase::Closing { .. })
    }

    /// Starts the worker of `slot`; a failure to start counts as a death at once.
    fn start_process(&mut self, pool: usize, slot: usize, now: Instant) {
        if self.processes_stopping() {
            return;
        }
        let jobs_at_start = self.pools[pool].metrics.job_duration().count();
        let p = &mut self.pools[pool];
        let Some(group) = p.spawned.as_mut() else {
            return;
        };
        match spawn::start(
            &group.config.command,
            &group.socket,
            group.config.max_requests,
        ) {
            Ok(child) => {
                debug!("pool {}: started process {}", p.name, child.id());
                if let Some(s) = group.slots.get_mut(slot) {
                    s.running = Some(Running {
                        child,
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
    fn schedule_restart(&mut self, pool: usize, slot: usize, now: Instant) {
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
    pub(super) fn open_circuit_without_workers(&mut self, pool: usize, now: Instant) -> bool {
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

    fn arm_restart_timer(&mut self, pool: usize) {
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
    pub(super) fn on_restart_timer(&mut self, pool: usize, now: Instant) {
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
            self.start_process(pool, slot, now);
        }
        self.arm_restart_timer(pool);
    }

    /// SIGCHLD: the workers are reaped at the end of the loop turn, once the events of
    /// the same batch are handled. A worker recycled by `max_requests` writes its last
    /// answer, then exits: its connection is readable no later than the signal, and the
    /// answer must be counted before deciding whether the worker "worked".
    pub(super) fn on_sigchld(&mut self) {
        self.spawned.reap_pending = true;
    }

    /// Reaps every worker that ended, and replaces it (see the module docs).
    fn reap_processes(&mut self, now: Instant) {
        for pool in 0..self.pools.len() {
            let slots = self.pools[pool]
                .spawned
                .as_ref()
                .map_or(0, |g| g.slots.len());
            for slot in 0..slots {
                self.reap_slot(pool, slot, now);
            }
        }
        let name_of = |pools: &[super::pools::Pool], pool: usize| {
            pools.get(pool).map_or(String::new(), |p| p.name.clone())
        };
        for (pool, group) in &mut self.spawned.retiring {
            for slot in &mut group.slots {
                let Some(running) = slot.running.as_mut() else {
                    continue;
                };
                let pid = running.child.id();
                if !spawn::has_ended(pid).unwrap_or(false) {
                    continue;
                }
                // Killed before reaped: until then the group id cannot be reused.
                let _ = spawn::signal_group(pid, Signal::SIGKILL);
                if let Ok(Some(status)) = running.child.try_wait() {
                    info!(
                        "pool {}: retired process {pid} {}",
                        name_of(&self.pools, *pool),
                        spawn::describe_exit(status)
                    );
                    slot.running = None;
                }
            }
        }
        // A retired group with no worker left is done: its socket goes with it.
        self.spawned.retiring.retain(|(_, group)| group.live() > 0);
    }

    fn reap_slot(&mut self, pool: usize, slot: usize, now: Instant) {
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
        let pid = running.child.id();
        match spawn::has_ended(pid) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!("pool {}: cannot wait for process {pid}: {e}", p.name);
                return;
            }
        }
        // Whatever the worker forked dies with it: nothing outlives its slot. Killed
        // while the worker is a zombie, not after reaping it: then its pid, the group's
        // id, could already name some other process's group.
        let _ = spawn::signal_group(pid, Signal::SIGKILL);
        let status = match running.child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(e) => {
                warn!("pool {}: cannot wait for process {pid}: {e}", p.name);
                return;
            }
        };
        let lived = now.saturating_duration_since(running.started_at);
        let worked = jobs_now > running.jobs_at_start;
        s.running = None;
        let how = spawn::describe_exit(status);
        let lived_s = lived.as_secs_f64();
        if stopping {
            info!("pool {}: process {pid} {how} after {lived_s:.1}s", p.name);
            return;
        }
        let line = format!(
            "pool {}: process {pid} {how} after {lived_s:.1}s; restarting",
            p.name
        );
        if status.success() {
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
        let recycled = status.success() && worked && quick_allowed;
        if lived >= HEALTHY_UPTIME || recycled {
            if lived < HEALTHY_UPTIME {
                s.quick_restart_at = Some(now);
            }
            s.backoff.reset();
            p.metrics.on_process_restart();
            self.start_process(pool, slot, now);
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
    pub(super) fn processes_stopped(&mut self, now: Instant) -> bool {
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
            for pool in 0..self.pools.len() {
                self.timers.cancel(TimerKey::Restart(pool));
                if let Some(group) = self.pools[pool].spawned.as_mut() {
                    group.signal_all(Signal::SIGTERM);
                    group.kill_at = Some(kill_at);
                }
            }
            for (_, group) in &mut self.spawned.retiring {
                if group.kill_at.is_none() {
                    group.signal_all(Signal::SIGTERM);
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
            .iter()
            .filter_map(|p| p.spawned.as_ref())
            .map(Group::live)
            .sum();
        let retiring: usize = self.spawned.retiring.iter().map(|(_, g)| g.live()).sum();
        current + retiring
    }

    fn arm_stop_timer(&mut self) {
        let next = self
            .pools
            .iter()
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
    pub(super) fn on_stop_processes_timer(&mut self, now: Instant) {
        let timeout = self.stop_timeout();
        let due = |group: &Group| group.kill_at.is_some_and(|at| at <= now);
        for p in &mut self.pools {
            if let Some(group) = p.spawned.as_mut().filter(|g| due(g)) {
                for pid in group.kill_and_reap() {
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
            for pid in group.kill_and_reap() {
                warn!(
                    "pool {name}: retired process {pid} still ran {} ms after SIGTERM; killed",
                    timeout.as_millis()
                );
            }
        }
        self.spawned.retiring.retain(|(_, group)| group.live() > 0);
        self.arm_stop_timer();
    }

    /// A second signal: kill and reap every worker now.
    pub(super) fn kill_processes(&mut self) {
        self.spawned.stopping = true;
        for p in &mut self.pools {
            if let Some(group) = p.spawned.as_mut() {
                let killed = group.kill_and_reap();
                if !killed.is_empty() {
                    warn!("pool {}: killed processes {killed:?}", p.name);
                }
            }
        }
        self.spawned.retiring.clear();
    }

    /// A reload changed the pool's `spawn` (or `address`): its workers retire and are
    /// stopped once no connection uses them ([`Runtime::tend_processes`]).
    pub(super) fn retire_processes(&mut self, pool: usize) {
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

    /// Once per loop turn: reaps after a SIGCHLD, retires the workers of a removed pool that finished its work,
    /// and sends SIGTERM to retiring groups no connection uses any more.
    pub(super) fn tend_processes(&mut self, now: Instant) {
        if std::mem::take(&mut self.spawned.reap_pending) {
            self.reap_processes(now);
        }
        for pool in 0..self.pools.len() {
            if self.pools[pool].is_finished() && self.pools[pool].spawned.is_some() {
                for token in self.pools[pool].take_idle_tokens() {
                    self.mark_close(token);
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
            let in_use = self.slab.iter().any(|(token, endpoint)| {
                matches!(endpoint, Endpoint::Worker(w) if w.pool == pool && w.generation == generation)
                    && !self.to_close.contains(&token)
            });
            if in_use {
                continue;
            }
            if let Some((_, group)) = self.spawned.retiring.get_mut(index) {
                group.signal_all(Signal::SIGTERM);
                group.kill_at = Some(kill_at);
                armed = true;
            }
        }
        self.spawned.retiring.retain(|(_, group)| group.live() > 0);
        if armed {
            self.arm_stop_timer();
        }
    }
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::Unix(path) => format!("unix:{}", path.display()),
        Target::Tcp(addr) => format!("tcp:{addr}"),
    }
}
