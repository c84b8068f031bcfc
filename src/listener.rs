//! Listening addresses shared by the front door (`proxy`) and the admin API (`control`), so
//! neither imports the other (DESIGN.md §7: both bind with `SO_REUSEPORT`).

use std::io;
use std::net::SocketAddr;

/// `addr` with a concrete port: port 0 becomes a free port taken by an exclusive bind (then
/// released). A port-0 bind with `SO_REUSEPORT` may be handed a port another reuse-port
/// listener of this user already holds, and the two would then share connections.
pub fn concrete_port(addr: SocketAddr) -> io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::TcpListener::bind(addr)?.local_addr()
}
