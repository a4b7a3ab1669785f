//! `resp_endpoint` sources: ferry will listen there itself, so what `ferry check` can say
//! beforehand is whether it *could*: the address resolves, the port or socket path is not
//! taken by another process, and the process may bind it. The trial socket is closed at
//! once (TCP with SO_REUSEADDR, as the runtime binds, so no TIME_WAIT is left behind).

use std::net::{TcpListener, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};

use ferry::config::Address;

/// `Ok(note)` when ferry could listen on `address`, `Err(why)` otherwise.
pub fn check_listen(address: &Address) -> Result<String, String> {
    match address {
        Address::Tcp { host, port } => {
            let addrs: Vec<_> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect();
            let first = addrs
                .first()
                .ok_or_else(|| format!("{host} has no address"))?;
            match TcpListener::bind(first) {
                Ok(_) => Ok(format!("{first} is free: 'ferry run' can listen there")),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
                    "{first} is in use by another process (is ferry or Redis already running there?)"
                )),
                Err(e) => Err(format!("cannot listen on {first}: {e}")),
            }
        }
        Address::Unix(path) => {
            if path.exists() {
                return match UnixStream::connect(path) {
                    Ok(_) => Err(format!(
                        "{} is in use: something answers on it",
                        path.display()
                    )),
                    // A socket nobody answers on: 'ferry run' replaces it.
                    Err(_) => Ok(format!(
                        "{} is a stale socket: 'ferry run' replaces it",
                        path.display()
                    )),
                };
            }
            match UnixListener::bind(path) {
                Ok(_) => {
                    let _ = std::fs::remove_file(path);
                    Ok(format!("{} can be created", path.display()))
                }
                Err(e) => Err(format!("cannot create {}: {e}", path.display())),
            }
        }
    }
}
