//! Listening sockets for everything faultline serves, with errors that name the address and the
//! owner, so "port already taken" is never a mystery.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::exit::Failure;

/// Binds `addr` for `owner` (e.g. "service `primary`"). A taken port is an environment failure.
pub async fn bind(addr: SocketAddr, owner: &str) -> Result<TcpListener, Failure> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| Failure::Environment(format!("cannot open a socket for {owner}: {e}")))?;
    // Restarted drills must not wait out TIME_WAIT from the previous run.
    let _ = socket.set_reuseaddr(true);
    socket.set_nodelay(true).ok();
    socket.bind(addr).map_err(|e| describe(addr, owner, &e))?;
    socket.listen(1024).map_err(|e| describe(addr, owner, &e))
}

fn describe(addr: SocketAddr, owner: &str, e: &std::io::Error) -> Failure {
    let why = if e.kind() == std::io::ErrorKind::AddrInUse {
        "the address is already in use (another process, or an earlier run still holding it)"
            .to_string()
    } else {
        e.to_string()
    };
    Failure::Environment(format!("cannot listen on {addr} for {owner}: {why}"))
}
