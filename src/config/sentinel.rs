//! The `sentinel` block of a `redis` or `redis_stream` source (`docs/CONFIGURATION.md`,
//! "Redis Sentinel"): ferry asks the sentinels where the master is instead of being told
//! a URL, and follows the master when the sentinels fail it over.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::address::split_host_port;
use super::url::{RedisUrl, Secret};
use super::{read_password, ConfigError};
use crate::proto::resp::sentinel::Credentials;

/// The port sentinels listen on unless told otherwise.
pub const SENTINEL_PORT: u16 = 26379;
/// Most sentinels one source may name.
const MAX_SENTINELS: usize = 16;

/// How a source finds its Redis master through Sentinel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelSettings {
    /// The master's name as the sentinels monitor it (`sentinel monitor <name> …`).
    pub master: String,
    /// The sentinels, `host:port` or `host` (port 26379), asked in this order.
    pub addresses: Vec<String>,
    /// ACL user for the sentinels (with `password_file`).
    #[serde(default)]
    pub username: Option<String>,
    /// File whose first line is the sentinels' own password (`requirepass` in
    /// `sentinel.conf`), which is not the master's.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// ACL user for the master (its password is the source's `password_file`).
    #[serde(default)]
    pub master_username: Option<String>,
    /// Database number on the master (a stream source's `SELECT`).
    #[serde(default)]
    pub db: u32,
    /// The sentinels parsed, after validation.
    #[serde(skip)]
    pub nodes: Vec<(String, u16)>,
    /// The sentinels' password, read from `password_file` by validation.
    #[serde(skip)]
    pub password: Option<Secret>,
    /// The master's password: the source's `password_file`, read by validation.
    #[serde(skip)]
    pub master_password: Option<Secret>,
}

impl SentinelSettings {
    /// Checks the block and parses the addresses.
    pub(super) fn resolve(&mut self, at: &str, base: Option<&Path>) -> Result<(), ConfigError> {
        let at = format!("{at}.sentinel");
        if self.master.is_empty() || self.master.contains([' ', '\r', '\n']) {
            return Err(ConfigError::new(
                format!("{at}.master"),
                "the master's name as the sentinels know it (no spaces)",
            ));
        }
        if self.addresses.is_empty() || self.addresses.len() > MAX_SENTINELS {
            return Err(ConfigError::new(
                format!("{at}.addresses"),
                format!("give 1–{MAX_SENTINELS} sentinels as host:port"),
            ));
        }
        self.nodes.clear();
        for (n, text) in self.addresses.iter().enumerate() {
            let node = split_host_port(text).or_else(|| {
                let bare = !text.is_empty() && !text.contains([':', '/', ' ']);
                bare.then(|| (text.clone(), SENTINEL_PORT))
            });
            let Some(node) = node else {
                return Err(ConfigError::new(
                    format!("{at}.addresses[{n}]"),
                    format!("'{text}' is not host:port"),
                ));
            };
            if self.nodes.contains(&node) {
                return Err(ConfigError::new(
                    format!("{at}.addresses[{n}]"),
                    format!("'{text}' is named twice"),
                ));
            }
            self.nodes.push(node);
        }
        if let Some(file) = &self.password_file {
            self.password = Some(read_password(&at, base, file)?);
        }
        Ok(())
    }

    /// The master's URL once a sentinel named it: its address, with the master's user,
    /// the source's password and `db`.
    pub fn master_url(&self, host: &str, port: u16) -> RedisUrl {
        RedisUrl {
            host: host.to_string(),
            port,
            username: self.master_username.clone(),
            password: self.master_password.clone(),
            db: self.db,
            tls: false,
        }
    }

    /// `AUTH` for the sentinels (`ferry run`'s watch and `ferry check`).
    pub fn sentinel_credentials(&self) -> Credentials {
        credentials(self.username.as_ref(), self.password.as_ref())
    }

    /// `AUTH` for the master's `ROLE` check.
    pub fn master_credentials(&self) -> Credentials {
        credentials(self.master_username.as_ref(), self.master_password.as_ref())
    }
}

fn credentials(username: Option<&String>, password: Option<&Secret>) -> Credentials {
    Credentials {
        username: username.map(|u| u.as_bytes().to_vec()),
        password: password.map(|p| p.expose().as_bytes().to_vec()),
    }
}
