//! What ferry provides itself, checked before `ferry run` starts it: a `resp_endpoint`
//! source's address (it resolves, the port or socket path is not taken by another
//! process, and the process may bind it; the trial socket is closed at once, with
//! SO_REUSEADDR as std binds on unix, so nothing lingers), and a spawned pool's program
//! (found and executable).

use std::net::{TcpListener, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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

/// `Ok(path)` of the executable a spawned pool's `command[0]` runs (a bare name is looked
/// up in `PATH`, as `exec` will), `Err(why)` when there is none.
pub fn check_program(program: &str) -> Result<PathBuf, String> {
    let path = ferry::process::spawn::program_path(program)
        .map_err(|e| format!("cannot find this ferry binary: {e}"))?;
    let executable = |candidate: &Path| {
        candidate
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if path.components().count() > 1 {
        return if executable(&path) {
            Ok(path)
        } else {
            Err(format!("{} is not an executable file", path.display()))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&path))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| format!("'{program}' is not found in PATH"))
}
