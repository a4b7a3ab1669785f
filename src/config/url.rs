//! Broker URLs (`docs/CONFIGURATION.md` "URLs"): `redis://[user:pass@]host:port[/db]` and
//! `amqp://user:pass@host:port/vhost`, with percent-decoding of the user, password and
//! vhost (`%2f` = `/`). Passwords are held in [`Secret`], whose `Debug` and `Display`
//! print `***`, and each URL's `Display` redacts it, so a URL can be logged as it is.

use std::fmt;

use super::address::split_host_port;

/// A password: never printed. `expose` is the one way to read it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The password itself, for the one place that sends it to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A parsed `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Server host.
    pub host: String,
    /// Server port (default 6379).
    pub port: u16,
    /// ACL user name, when given (`AUTH user pass`); with only a password, `AUTH pass`.
    pub username: Option<String>,
    /// Password, when given in the URL or a `password_file`.
    pub password: Option<Secret>,
    /// Database number from the path. Pub/sub ignores databases, so it is only checked.
    pub db: u32,
    /// `rediss://`: the connection is TLS (`docs/CONFIGURATION.md`, "TLS").
    pub tls: bool,
}

/// A parsed `amqp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    /// Broker host.
    pub host: String,
    /// Broker port (default 5672).
    pub port: u16,
    /// User name (default `guest`).
    pub username: String,
    /// Password (default `guest`).
    pub password: Secret,
    /// Virtual host, percent-decoded (default `/`).
    pub vhost: String,
    /// `amqps://`: the connection is TLS (default port 5671).
    pub tls: bool,
}

/// The parts every URL shares, before scheme-specific defaults.
struct Parts {
    username: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    path: Option<String>,
}

/// Splits `url` of `scheme` or its TLS form `{scheme}s`; `.1` is true for the TLS form.
fn split(url: &str, scheme: &str) -> Result<(Parts, bool), String> {
    let after = |tail: &str| url.strip_prefix(scheme).and_then(|r| r.strip_prefix(tail));
    let (rest, tls) = match (after("://"), after("s://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return Err(format!("must start with {scheme}:// or {scheme}s:// (TLS)")),
    };
    if rest.contains(['?', '#']) {
        return Err("query strings and fragments are not supported".into());
    }
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, pass)) => (Some(percent_decode(user)?), Some(percent_decode(pass)?)),
            None => (Some(percent_decode(info)?), None),
        },
    };
    let (host, port) = if hostport.ends_with(']') || !hostport.contains(':') {
        let host = hostport.trim_start_matches('[').trim_end_matches(']');
        (host.to_string(), None)
    } else {
        let (host, port) = split_host_port(hostport).ok_or("bad host:port")?;
        (host, Some(port))
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let parts = Parts {
        username: username.filter(|u| !u.is_empty()),
        password,
        host,
        port,
        path: path.map(percent_decode).transpose()?,
    };
    Ok((parts, tls))
}

impl RedisUrl {
    /// Parses `redis://[user:pass@]host[:port][/db]` (`rediss://` for TLS).
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let (parts, tls) = split(url, "redis")?;
        let db = match parts.path.as_deref() {
            None | Some("") => 0,
            Some(db) => db
                .parse()
                .map_err(|_| format!("database '{db}' is not a number"))?,
        };
        Ok(RedisUrl {
            host: parts.host,
            port: parts.port.unwrap_or(6379),
            username: parts.username,
            password: parts.password.map(Secret),
            db,
            tls,
        })
    }
}

impl AmqpUrl {
    /// Parses `amqp://[user[:pass]@]host[:port][/vhost]` (`amqps://` for TLS). A missing or empty vhost is `/`
    /// (`docs/CONFIGURATION.md` "URLs"; RabbitMQ's URI spec reads `amqp://host/` as the
    /// empty vhost, which no operator means).
    pub fn parse(url: &str) -> Result<AmqpUrl, String> {
        let (parts, tls) = split(url, "amqp")?;
        Ok(AmqpUrl {
            host: parts.host,
            port: parts.port.unwrap_or(if tls { 5671 } else { 5672 }),
            tls,
            username: parts.username.unwrap_or_else(|| "guest".into()),
            password: Secret(parts.password.unwrap_or_else(|| "guest".into())),
            vhost: match parts.path {
                Some(vhost) if !vhost.is_empty() => vhost,
                _ => "/".into(),
            },
        })
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
        write!(f, "{}:{}/{}", host_for_url(&self.host), self.port, self.db)
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vhost = if self.vhost == "/" {
            "%2f"
        } else {
            &self.vhost
        };
        write!(
            f,
            "{}://{}:***@{}:{}/{vhost}",
            if self.tls { "amqps" } else { "amqp" },
            self.username,
            host_for_url(&self.host),
            self.port
        )
    }
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in '{text}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{text}' does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let url = RedisUrl::parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("127.0.0.1", 6379, 0)
        );
        assert_eq!((url.username, url.password), (None, None));
        let url = RedisUrl::parse("redis://app:s%40cret@redis.internal/3").unwrap();
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!((url.port, url.db), (6379, 3));
        let url = RedisUrl::parse("redis://:pw@[::1]:7000").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 7000));
        assert_eq!(url.username, None);
        assert_eq!(url.to_string(), "redis://:***@[::1]:7000/0");
    }

    #[test]
    fn amqp_urls() {
        let url = AmqpUrl::parse("amqp://guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(url.vhost, "/");
        assert_eq!(url.password.expose(), "guest");
        let url = AmqpUrl::parse("amqp://u:p%2Fw@rabbit/prod%2Fjobs").unwrap();
        assert_eq!((url.port, url.vhost.as_str()), (5672, "prod/jobs"));
        assert_eq!(url.password.expose(), "p/w");
        assert_eq!(AmqpUrl::parse("amqp://h/").unwrap().vhost, "/");
        assert_eq!(AmqpUrl::parse("amqp://h").unwrap().username, "guest");
    }

    #[test]
    fn tls_schemes() {
        let url = AmqpUrl::parse("amqps://u:p@rabbit/v").unwrap();
        assert!(url.tls);
        assert_eq!(url.port, 5671, "amqps' own port");
        assert_eq!(url.to_string(), "amqps://u:***@rabbit:5671/v");
        let url = RedisUrl::parse("rediss://:pw@cache:6380/0").unwrap();
        assert!(url.tls);
        assert_eq!(url.to_string(), "rediss://:***@cache:6380/0");
        assert!(!RedisUrl::parse("redis://cache").unwrap().tls);
    }

    #[test]
    fn passwords_never_print() {
        let url = AmqpUrl::parse("amqp://u:topsecret@h/v").unwrap();
        assert!(!format!("{url} {url:?}").contains("topsecret"));
        let url = RedisUrl::parse("redis://u:topsecret@h").unwrap();
        assert!(!format!("{url} {url:?}").contains("topsecret"));
    }

    #[test]
    fn bad_urls_say_why() {
        for bad in [
            "http://h",
            "redis://",
            "redis://h:port",
            "redis://h/x",
            "redis://h?db=1",
            "redis://u:%zz@h",
            "redisss://h",
            "amqpx://h",
        ] {
            let redis = RedisUrl::parse(bad);
            let amqp = AmqpUrl::parse(bad);
            assert!(redis.is_err() && amqp.is_err(), "{bad:?} accepted");
        }
    }
}
