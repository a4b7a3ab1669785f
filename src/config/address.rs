//! Endpoint addresses as operators write them (`docs/CONFIGURATION.md` "Addresses"):
//! `unix:/path/to.sock`, `tcp:host:port`, or a bare `host:port` (TCP). Names are kept
//! unresolved: resolution happens off the reactor's hot path, so it never blocks the loop.

use std::fmt;
use std::path::PathBuf;

/// Where a pool, the control endpoint or a RESP endpoint listens or is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A unix stream socket path.
    Unix(PathBuf),
    /// A TCP host (name or IP literal, IPv6 without brackets) and port.
    Tcp {
        /// Host name or IP literal.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl Address {
    /// Parses `unix:/path`, `tcp:host:port`, `host:port` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Address, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: address needs a socket path".into());
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let hostport = text.strip_prefix("tcp:").unwrap_or(text);
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| format!("'{text}' is not unix:/path, tcp:host:port or host:port"))?;
        Ok(Address::Tcp { host, port })
    }
}

/// Splits `host:port` or `[v6]:port`; `None` when the port is missing or not a u16.
pub(crate) fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if host.contains(':') {
            return None; // a bare IPv6 literal needs brackets to carry a port
        }
        (host, port)
    };
    if host.is_empty() {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    Some((host.to_string(), port))
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Address::parse("unix:/run/php/php8.2-fpm.sock"),
            Ok(Address::Unix("/run/php/php8.2-fpm.sock".into()))
        );
        let tcp = |host: &str, port| Address::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!(
            Address::parse("tcp:127.0.0.1:9000"),
            Ok(tcp("127.0.0.1", 9000))
        );
        assert_eq!(Address::parse("localhost:9000"), Ok(tcp("localhost", 9000)));
        assert_eq!(Address::parse("[::1]:9180"), Ok(tcp("::1", 9180)));
        assert_eq!(
            Address::parse("[::1]:9180").unwrap().to_string(),
            "[::1]:9180"
        );
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "unix:",
            "host",
            "host:",
            ":80",
            "host:99999",
            "::1:80",
            "tcp:",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
