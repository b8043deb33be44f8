//! The client side of the API, for `failmail report`: one `GET` over a fresh HTTP/1.1
//! connection, bounded in time and size, with the bearer token if one is given.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read or write may wait.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response read: a report of every message followed fits many times over.
const MAX_RESPONSE: u64 = 512 * 1024 * 1024;

/// Why the API could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `HOST:PORT` (optionally with `http://`).
    #[error("cannot use {0:?} as an address: give HOST:PORT, e.g. the http= of the ready line")]
    Address(String),
    /// No connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("reading from {addr}: {source}")]
    Io {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// What came back is not an HTTP response.
    #[error("{0} did not answer with an HTTP response")]
    Malformed(String),
    /// The API answered with an error.
    #[error("GET {path} answered {status}: {body}")]
    Status {
        /// The path asked for.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The body (the API's JSON error).
        body: String,
    },
}

/// `GET path` from the API at `address` (`HOST:PORT` or `http://HOST:PORT`); the body of a 200.
pub fn get(address: &str, path: &str, token: Option<&str>) -> Result<Vec<u8>, ClientError> {
    let host = address
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let addr: SocketAddr = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ClientError::Address(address.to_owned()))?;
    let io = |source| ClientError::Io {
        addr: host.to_owned(),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|source| {
        ClientError::Connect {
            addr: host.to_owned(),
            source,
        }
    })?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(io)?;
    let (status, body) =
        parse_response(&response).ok_or_else(|| ClientError::Malformed(host.to_owned()))?;
    if status != 200 {
        return Err(ClientError::Status {
            path: path.to_owned(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(body)
}

/// The status and body of a whole HTTP/1.1 response (a chunked body is put back together).
fn parse_response(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..split]).ok()?;
    let body = &response[split + 4..];
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    Some((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

/// A chunked body (RFC 9112 §7.1) as its bytes.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Some((200, b"{}".to_vec())));
        let chunked = b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((409, b"abcde".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert!(matches!(
            get("not an address", "/", None),
            Err(ClientError::Address(_))
        ));
    }
}
