//! Starting nonblocking connects, and resolving host names without blocking the loop
//! (`docs/CONFIGURATION.md`, "Addresses": a name is looked up off the loop).
//!
//! libc offers no nonblocking `getaddrinfo`, so a name that is not an IP literal is
//! resolved on a short-lived thread that hands the result back through a channel and
//! wakes the loop with a [`mio::Waker`]. These threads only ever call the resolver: all
//! of ferry's state stays on the reactor thread. IP literals and unix paths need none.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use mio::net::{TcpStream, UnixStream};
use mio::Waker;

use super::conn::Stream;
use crate::config::Address;

/// A resolved place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// Starts a nonblocking connect. Unix sockets usually connect (or fail: `ENOENT`,
/// `ECONNREFUSED`, `EAGAIN` when the listen backlog is full) at once; TCP completes
/// later, reported by a writable event ([`Stream::connect_finished`]).
pub fn start(target: &Target) -> io::Result<Stream> {
    match target {
        Target::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
        Target::Tcp(addr) => {
            let stream = TcpStream::connect(*addr)?;
            let _ = stream.set_nodelay(true);
            Ok(Stream::Tcp(stream))
        }
    }
}

/// What [`Resolver::resolve`] could answer at once.
#[derive(Debug)]
pub enum Resolution {
    /// The address needed no lookup.
    Ready(Vec<Target>),
    /// A lookup runs; its answer comes from [`Resolver::finished`] with this id.
    Pending(u64),
}

/// Hands host-name lookups to helper threads; see the module docs.
#[derive(Debug)]
pub struct Resolver {
    waker: Arc<Waker>,
    sender: Sender<(u64, io::Result<Vec<SocketAddr>>)>,
    receiver: Receiver<(u64, io::Result<Vec<SocketAddr>>)>,
    next_id: u64,
}

impl Resolver {
    /// A resolver that wakes the loop through `waker` when a lookup finishes.
    pub fn new(waker: Arc<Waker>) -> Resolver {
        let (sender, receiver) = channel();
        Resolver {
            waker,
            sender,
            receiver,
            next_id: 1,
        }
    }

    /// Resolves `address`: at once for unix paths and IP literals, else on a thread.
    pub fn resolve(&mut self, address: &Address) -> io::Result<Resolution> {
        let (host, port) = match address {
            Address::Unix(path) => return Ok(Resolution::Ready(vec![Target::Unix(path.clone())])),
            Address::Tcp { host, port } => (host.clone(), *port),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolution::Ready(vec![Target::Tcp(SocketAddr::new(
                ip, port,
            ))]));
        }
        let id = self.next_id;
        self.next_id += 1;
        let sender = self.sender.clone();
        let waker = Arc::clone(&self.waker);
        std::thread::Builder::new()
            .name("ferry-resolve".into())
            .spawn(move || {
                let result = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect::<Vec<_>>);
                // The loop may be gone (shutdown): then nobody needs the answer.
                if sender.send((id, result)).is_ok() {
                    let _ = waker.wake();
                }
            })?;
        Ok(Resolution::Pending(id))
    }

    /// Lookups that finished since the last call.
    pub fn finished(&mut self) -> Vec<(u64, io::Result<Vec<Target>>)> {
        self.receiver
            .try_iter()
            .map(|(id, result)| {
                let targets = result.and_then(|addrs| {
                    if addrs.is_empty() {
                        Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            "no address for host",
                        ))
                    } else {
                        Ok(addrs.into_iter().map(Target::Tcp).collect())
                    }
                });
                (id, targets)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn literals_resolve_at_once_and_names_on_a_thread() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let mut resolver = Resolver::new(waker);
        let literal = Address::parse("127.0.0.1:6379").unwrap();
        let Resolution::Ready(targets) = resolver.resolve(&literal).unwrap() else {
            panic!("literal needs no lookup")
        };
        assert_eq!(
            targets,
            vec![Target::Tcp("127.0.0.1:6379".parse().unwrap())]
        );
        let name = Address::parse("localhost:6379").unwrap();
        let Resolution::Pending(id) = resolver.resolve(&name).unwrap() else {
            panic!("names are looked up")
        };
        let mut events = Events::with_capacity(4);
        let mut answers = Vec::new();
        for _ in 0..50 {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            answers.extend(resolver.finished());
            if !answers.is_empty() {
                break;
            }
        }
        let (got, result) = answers.pop().expect("lookup answered");
        assert_eq!(got, id);
        let targets = result.unwrap();
        assert!(targets
            .iter()
            .all(|t| matches!(t, Target::Tcp(a) if a.port() == 6379)));
    }
}
