//! A private RabbitMQ node for one test: its own node name, ports, data directory,
//! cookie and configuration (a TLS listener, say), started beside the system's node on
//! 5672 and stopped — with every Erlang process it started — when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program that runs a node in the foreground (Debian's wrapper would `su` to the
/// rabbitmq user and drop the environment that makes the node private).
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A running private node.
pub struct RabbitNode {
    child: Option<Child>,
    dir: PathBuf,
    /// `ferry-<test>-<pid>@<host>`.
    pub name: String,
    /// The plain AMQP port.
    pub amqp_port: u16,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn short_hostname() -> String {
    let out = Command::new("hostname")
        .arg("-s")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl RabbitNode {
    /// Starts a node named after `tag` in `dir`, with `extra_conf` appended to its
    /// `rabbitmq.conf` (which already sets the plain listener on `amqp_port`), and waits
    /// until `wait_port` accepts connections (up to 90 s).
    pub fn start(
        dir: &Path,
        tag: &str,
        amqp_port: u16,
        extra_conf: &str,
        wait_port: u16,
    ) -> RabbitNode {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} missing: install the package rabbitmq-server"
        );
        let name = format!("ferry-{tag}-{}@{}", std::process::id(), short_hostname());
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        let conf = format!(
            "listeners.tcp.default = {amqp_port}\nloopback_users = none\n\
             management.tcp.port = 0\n{extra_conf}\n"
        );
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let cookie = dir.join(".erlang.cookie");
        std::fs::write(&cookie, format!("FERRYTEST{}", std::process::id())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();
        let log = std::fs::File::create(dir.join("node.out")).unwrap();
        let child = Command::new(SERVER)
            // Erlang writes its crash dumps to the working directory: keep them in `dir`.
            .current_dir(dir)
            .envs(node_env(dir, &name))
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server");
        let node = RabbitNode {
            child: Some(child),
            dir: dir.to_path_buf(),
            name,
            amqp_port,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", wait_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "RabbitMQ node {} did not listen on {wait_port} within 90 s: {}",
                node.name,
                std::fs::read_to_string(dir.join("node.out")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        node
    }

    /// `rabbitmqctl -n <node> ARGS`: its standard output; panics when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(CTL)
            .envs(node_env(&self.dir, &self.name))
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The number of ready messages in `queue` (`None` when it does not exist).
    pub fn depth(&self, queue: &str) -> Option<u64> {
        let out = self.ctl(&[
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages",
        ]);
        out.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some(queue)).then(|| parts.next()?.parse().ok())?
        })
    }
}

fn node_env(dir: &Path, name: &str) -> Vec<(String, String)> {
    let path = |p: &str| dir.join(p).display().to_string();
    vec![
        ("HOME".into(), dir.display().to_string()),
        ("RABBITMQ_NODENAME".into(), name.to_string()),
        ("RABBITMQ_CONFIG_FILE".into(), path("rabbitmq.conf")),
        (
            "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
            path("enabled_plugins"),
        ),
        ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
        ("RABBITMQ_LOG_BASE".into(), path("log")),
        ("RABBITMQ_PID_FILE".into(), path("node.pid")),
    ]
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        // A polite stop first (it ends the node's epmd registration), then the OS pid the
        // node wrote, then the wrapper.
        let _ = Command::new(CTL)
            .envs(node_env(&self.dir, &self.name))
            .args(["-n", &self.name, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("node.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
