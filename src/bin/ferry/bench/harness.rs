//! The processes a run starts — the workers (one `ferry responder`, or a private php-fpm
//! master) and ferry itself with a generated config — and their cleanup.
//!
//! Everything lives in a fresh temporary directory ([`Scratch`]) removed on drop, and
//! every child is a [`Process`] stopped on drop (SIGTERM, then SIGKILL after a few
//! seconds). Children also get `PR_SET_PDEATHSIG`, so even a `kill -9` of the bench
//! leaves no orphan. Ctrl-C sets [`interrupted`] (see [`watch_signals`]); every wait
//! checks it and returns an error, so the destructors run on that path too.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::plan::{Plan, SourceKind, Workers};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// The flag publishers and drivers poll to stop early.
pub fn stop_flag() -> &'static AtomicBool {
    &INTERRUPTED
}

/// Catches SIGINT and SIGTERM on a helper thread, which only sets [`interrupted`]: the
/// bench then stops at its next check and cleans up instead of dying with children and
/// a temporary directory left behind.
pub fn watch_signals() -> Result<(), String> {
    use mio::{Events, Interest, Poll, Token};
    use signal_hook_mio::v1_0::Signals;
    let mut signals = Signals::new([nix::libc::SIGINT, nix::libc::SIGTERM])
        .map_err(|e| format!("signal handlers: {e}"))?;
    let mut poll = Poll::new().map_err(|e| format!("signal handlers: {e}"))?;
    poll.registry()
        .register(&mut signals, Token(0), Interest::READABLE)
        .map_err(|e| format!("signal handlers: {e}"))?;
    std::thread::spawn(move || {
        let mut events = Events::with_capacity(4);
        loop {
            if poll.poll(&mut events, None).is_err() {
                continue;
            }
            if signals.pending().next().is_some() {
                INTERRUPTED.store(true, Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

/// Fails when Ctrl-C was pressed.
pub fn check_interrupted() -> Result<(), String> {
    if interrupted() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// A temporary directory, removed with everything in it on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates `/tmp/ferry-bench-<pid>-<n>`, private to this user (php-fpm's children
    /// run as this user too; ferry's config in it may hold broker passwords).
    pub fn new() -> Result<Scratch, String> {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferry-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        Ok(Scratch { dir })
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process, stopped on drop.
pub struct Process {
    name: &'static str,
    child: std::process::Child,
    stderr: PathBuf,
}

impl Process {
    /// Starts `program args` with stderr to `stderr` and `PR_SET_PDEATHSIG`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        stderr: PathBuf,
    ) -> Result<Process, String> {
        use std::os::unix::process::CommandExt;
        let file =
            std::fs::File::create(&stderr).map_err(|e| format!("{}: {e}", stderr.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2), which is async-signal-safe; it touches no memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(Process {
            name,
            child,
            stderr,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error when the process has exited, with the end of its stderr.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its stderr ends with:\n{}",
                self.name,
                self.stderr_tail()
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// The last lines the process wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Sends SIGTERM and waits up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Polls `ready` every `interval` until it answers true; fails after `limit`, on
/// Ctrl-C, or when one of `watch` exits.
pub fn wait_until(
    what: &str,
    interval: Duration,
    limit: Duration,
    watch: &mut [&mut Process],
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        check_interrupted()?;
        for process in watch.iter_mut() {
            process.check_alive()?;
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = watch
                .iter()
                .map(|p| format!("{}:\n{}", p.name, p.stderr_tail()))
                .collect();
            return Err(format!(
                "{what}: not ready within {limit:?}\n{}",
                tails.join("\n")
            ));
        }
        std::thread::sleep(interval);
    }
}

/// The running workers.
pub struct WorkerPool {
    /// The process (responder or php-fpm master).
    pub process: Process,
    /// Where they listen (`unix:` path).
    pub socket: PathBuf,
    /// Where they log receipts.
    pub log: PathBuf,
    /// SCRIPT_FILENAME for requests.
    pub script: String,
}

/// Starts the plan's workers in `scratch` and waits until their socket accepts.
pub fn start_workers(plan: &Plan, scratch: &Scratch) -> Result<WorkerPool, String> {
    let socket = scratch.path("workers.sock");
    let log = scratch.path("receipts.log");
    let (mut process, script) = match &plan.workers {
        Workers::Responder => {
            let ferry = std::env::current_exe().map_err(|e| format!("ferry binary: {e}"))?;
            let mut args = vec![
                "responder".to_string(),
                "--listen".into(),
                format!("unix:{}", socket.display()),
                "--log".into(),
                log.display().to_string(),
            ];
            if plan.delay_ms > 0 {
                args.extend(["--delay-ms".into(), plan.delay_ms.to_string()]);
            }
            let process = Process::spawn(
                "ferry responder",
                &ferry,
                &args,
                scratch.path("responder.err"),
            )?;
            (process, "/ferry-bench/responder".to_string())
        }
        Workers::Php { script, binary } => {
            let conf = scratch.path("php-fpm.conf");
            std::fs::write(
                &conf,
                php_fpm_conf(
                    scratch,
                    &socket,
                    &log,
                    plan.php_children.unwrap_or(plan.pool),
                ),
            )
            .map_err(|e| format!("{}: {e}", conf.display()))?;
            let args = vec![
                "-F".to_string(),
                "-R".into(),
                "-y".into(),
                conf.display().to_string(),
            ];
            let process = Process::spawn("php-fpm", binary, &args, scratch.path("php-fpm.err"))?;
            (process, script.display().to_string())
        }
    };
    wait_until(
        "workers",
        Duration::from_millis(20),
        Duration::from_secs(20),
        &mut [&mut process],
        || UnixStream::connect(&socket).is_ok(),
    )?;
    Ok(WorkerPool {
        process,
        socket,
        log,
        script,
    })
}

fn php_fpm_conf(scratch: &Scratch, socket: &Path, log: &Path, children: usize) -> String {
    let user = id("-un");
    let group = id("-gn");
    format!(
        "[global]\npid = {pid}\nerror_log = {errors}\ndaemonize = no\n\n\
         [ferry-bench]\nuser = {user}\ngroup = {group}\nlisten = {socket}\n\
         listen.backlog = 4096\npm = static\npm.max_children = {children}\n\
         catch_workers_output = yes\nphp_admin_value[display_errors] = Off\n\
         php_admin_value[log_errors] = On\nenv[FERRY_BENCH_LOG] = {log}\n",
        pid = scratch.path("php-fpm.pid").display(),
        errors = scratch.path("php-fpm.log").display(),
        socket = socket.display(),
        log = log.display(),
    )
}

fn id(flag: &str) -> String {
    Command::new("id")
        .arg(flag)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nobody".into())
}

/// A ferry started for the run.
pub struct FerryProcess {
    /// The process.
    pub process: Process,
    /// Its control socket.
    pub control: PathBuf,
    /// From spawning it to `/readyz` answering 200 (sources connected, pool answering).
    pub start_to_ready: Duration,
}

/// The queue arguments of a bench queue: removed by the broker 10 minutes after its
/// last use, so runs leave nothing behind in RabbitMQ.
pub fn bench_queue_arguments() -> serde_json::Map<String, serde_json::Value> {
    let mut arguments = serde_json::Map::new();
    arguments.insert("x-expires".into(), json!(600_000));
    arguments
}

/// Where the source is: channel or queue name, and the endpoint's port.
pub struct SourceTarget {
    /// Channel (Redis, endpoint) or queue (AMQP).
    pub name: String,
    /// The endpoint's TCP port.
    pub endpoint_port: Option<u16>,
}

/// Starts `ferry run` with a config for `plan`, feeding `workers`, and waits until
/// `/readyz` answers 200 (sources connected, pool circuit closed).
pub fn start_ferry(
    plan: &Plan,
    scratch: &Scratch,
    workers: &mut WorkerPool,
    target: &SourceTarget,
) -> Result<FerryProcess, String> {
    let control = scratch.path("control.sock");
    let job = json!({ "pool": "workers", "script": workers.script });
    // Redis and the endpoint queue a burst in ferry's backlog rather than dropping it.
    let backlog = plan.count.max(1000);
    let source = match plan.source {
        SourceKind::Redis => json!({
            "name": "bench", "kind": "redis", "url": plan.redis_text,
            "channels": [target.name], "backlog": backlog, "backlog_bytes": 1u64 << 30,
            "job": job,
        }),
        SourceKind::Amqp => json!({
            "name": "bench", "kind": "amqp", "url": plan.amqp_text,
            "queue": target.name, "prefetch": plan.prefetch(),
            "declare": { "durable": false, "arguments": bench_queue_arguments() },
            "job": job,
        }),
        SourceKind::Stream => json!({
            "name": "bench", "kind": "redis_stream", "url": plan.redis_text,
            "stream": target.name, "group": "bench", "start": "0",
            "job": job,
        }),
        SourceKind::Endpoint => json!({
            "name": "bench", "kind": "resp_endpoint",
            "listen": format!("127.0.0.1:{}", target.endpoint_port.unwrap_or(0)),
            "channels": [target.name], "backlog": backlog, "backlog_bytes": 1u64 << 30,
            "job": job,
        }),
    };
    let config = json!({
        "control": { "listen": format!("unix:{}", control.display()) },
        "shutdown_timeout_ms": 2000,
        "pools": { "workers": {
            "address": format!("unix:{}", workers.socket.display()),
            "max_in_flight": plan.pool,
            "keep_conn": plan.keep_conn,
            "request_timeout_ms": 60_000 + plan.delay_ms,
        } },
        "sources": [source],
    });
    let path = scratch.path("ferry.json");
    let text = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    let ferry = std::env::current_exe().map_err(|e| format!("ferry binary: {e}"))?;
    let args = vec![
        "run".to_string(),
        "--config".into(),
        path.display().to_string(),
        "--log-level".into(),
        "warn".into(),
    ];
    let started = Instant::now();
    let mut process = Process::spawn("ferry run", &ferry, &args, scratch.path("ferry.err"))?;
    // Polled every 2 ms: the time to ready is one of the figures reported.
    wait_until(
        "ferry",
        Duration::from_millis(2),
        Duration::from_secs(20),
        &mut [&mut process, &mut workers.process],
        || http_get_unix(&control, "/readyz").is_some_and(|(status, _)| status == 200),
    )?;
    Ok(FerryProcess {
        process,
        control,
        start_to_ready: started.elapsed(),
    })
}

/// `GET path` on a unix-socket HTTP server: the status and body.
pub fn http_get_unix(socket: &Path, path: &str) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}
