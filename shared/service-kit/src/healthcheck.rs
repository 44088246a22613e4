//! The `healthcheck` subcommand of both servers (for Docker): `GET /readyz` on the local port
//! with a plain HTTP/1.1 request, so the image needs no client library.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long connecting, sending and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the local server is not healthy. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// It answered, but not 200.
    #[error("not ready")]
    NotReady,
    /// It could not be reached, or did not answer in time.
    #[error("{addr}: {source}")]
    Unreachable {
        /// The address tried (`127.0.0.1:<port>`).
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// `Ok` when the server on `127.0.0.1:port` answers `GET /readyz` with 200.
pub fn check_ready(port: u16) -> Result<(), Unhealthy> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match status_is_200(addr) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Unhealthy::NotReady),
        Err(source) => Err(Unhealthy::Unreachable { addr, source }),
    }
}

fn status_is_200(addr: SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn serve_once(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(reply);
        });
        port
    }

    #[test]
    fn a_200_is_ready_anything_else_is_not_and_no_server_is_unreachable() {
        let port = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(check_ready(port).is_ok());
        let port = serve_once(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(check_ready(port), Err(Unhealthy::NotReady)));

        let unused = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = unused.local_addr().unwrap().port();
        drop(unused);
        let err = check_ready(port).unwrap_err();
        assert!(matches!(err, Unhealthy::Unreachable { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("127.0.0.1:{port}: ")), "{err}");
    }
}
