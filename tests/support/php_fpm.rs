//! A private php-fpm master for integration tests: its own config, unix socket, pid file
//! and error log in a fresh temporary directory (the system's php-fpm service is never
//! touched), started with `php-fpm8.2 -F -R -y <conf>`, awaited until the socket answers a
//! FastCGI GET_VALUES, and killed (with its children) on drop.
//!
//! A missing `php-fpm8.2` is a test failure, not a skip: these tests exist to prove ferry
//! against the real server. Use it from a test file with
//! `#[path = "support/php_fpm.rs"] mod php_fpm;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How to configure the pool.
#[derive(Debug, Clone)]
pub struct PhpFpmOptions {
    /// `pm.max_children` (pm = static).
    pub children: u32,
    /// Extra lines for the pool section (`php_admin_value[…] = …`, `security.…`).
    pub pool_lines: Vec<String>,
}

impl Default for PhpFpmOptions {
    fn default() -> Self {
        Self {
            children: 2,
            pool_lines: Vec::new(),
        }
    }
}

/// A running private php-fpm master.
pub struct PhpFpm {
    dir: PathBuf,
    socket: PathBuf,
    conf: PathBuf,
    child: Child,
}

/// Finds the php-fpm 8.2 binary (often in /usr/sbin, which may not be on PATH).
pub fn php_fpm_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("php-fpm8.2"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([
            "/usr/sbin/php-fpm8.2".into(),
            "/usr/local/sbin/php-fpm8.2".into(),
        ])
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "php-fpm8.2 not found on PATH or in /usr/sbin: install php8.2-fpm \
                 (apt-get install php8.2-fpm php8.2-cli); this test needs the real server"
            )
        })
}

fn spawn(conf: &Path) -> Child {
    let binary = php_fpm_binary();
    Command::new(&binary)
        .args(["-F", "-R", "-y"])
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()))
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8(out.stdout)
        .expect("id output")
        .trim()
        .to_string()
}

impl PhpFpm {
    /// Starts a pool with default options (2 static children).
    pub fn start() -> Self {
        Self::start_with(PhpFpmOptions::default())
    }

    /// Starts a pool and waits until its socket answers.
    pub fn start_with(options: PhpFpmOptions) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferry-php-fpm-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        // The workers run as this user and must read the scripts.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("php-fpm.sock");
        let mut conf = format!(
            "[global]\npid = {dir}/php-fpm.pid\nerror_log = {dir}/php-fpm.log\ndaemonize = no\n\n\
             [ferry-test]\nuser = {user}\ngroup = {group}\nlisten = {socket}\npm = static\n\
             pm.max_children = {children}\ncatch_workers_output = yes\n\
             php_admin_value[display_errors] = Off\nphp_admin_value[log_errors] = On\n",
            dir = dir.display(),
            user = id("-un"),
            group = id("-gn"),
            socket = socket.display(),
            children = options.children,
        );
        for line in &options.pool_lines {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = dir.join("php-fpm.conf");
        std::fs::write(&conf_path, conf).expect("write php-fpm.conf");
        let child = spawn(&conf_path);
        let mut fpm = Self {
            dir,
            socket,
            conf: conf_path,
            child,
        };
        fpm.wait_until_answering();
        fpm
    }

    /// Stops the master gracefully (SIGQUIT: requests in flight finish first) and waits.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        let _ = self.child.wait();
    }

    /// Starts the master again with the same configuration and socket.
    pub fn restart(&mut self) {
        self.child = spawn(&self.conf);
        self.wait_until_answering();
    }

    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "php-fpm exited with {status} before answering; its log:\n{}",
                    self.log()
                );
            }
            if self.answers_get_values() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "php-fpm did not answer on {} within 10 s; its log:\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True when the socket accepts a connection and answers GET_VALUES.
    fn answers_get_values(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = Vec::new();
        if ferry::proto::fastcgi::encode_get_values(&mut request, [&b"FCGI_MPXS_CONNS"[..]])
            .is_err()
            || stream.write_all(&request).is_err()
        {
            return false;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        matches!(
            ferry::proto::fastcgi::decode_get_values_result(&answer),
            Ok(ferry::proto::Status::Complete(..))
        )
    }

    /// The pool's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory (scripts and logs go here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a world-readable script into the temporary directory; returns its path.
    pub fn write_script(&self, name: &str, source: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, source).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// The master's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("php-fpm.log")).unwrap_or_default()
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // SIGKILL on the master alone would orphan its children: SIGTERM first (the
        // master stops its children), then KILL if it lingers.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
