//! One supervisord XML-RPC call over the control socket, timed by the client.
//!
//! S4's "one direct RPC" is exactly what a client pays: connect a fresh unix
//! socket, send `POST /RPC2`, read the whole answer. The request is written by
//! hand (HTTP/1.0, so the server closes after answering) and the body is read
//! but not parsed, so the figure is server time plus transfer, without any
//! client-side XML cost.

use anyhow::{Context, bail};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A completed call.
#[derive(Debug)]
pub struct RpcTiming {
    pub elapsed: Duration,
    pub body_bytes: usize,
}

/// The HTTP request for `method` with no parameters.
pub fn request(path: &str, method: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>{method}</methodName>\n<params>\n</params>\n</methodCall>\n"
    );
    format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: vigil-bench\r\n\
         Content-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Splits a raw HTTP response into status code and body, checking the
/// declared length when there is one.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, &[u8])> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of HTTP headers")?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let body = &raw[split + 4..];
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")?;
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            let declared: usize = v.trim().parse().context("bad Content-Length")?;
            if declared != body.len() {
                bail!("body has {} bytes, Content-Length says {declared}", body.len());
            }
        }
    }
    Ok((status, body))
}

/// Calls `method` on a fresh connection to `socket`.
pub async fn call(
    socket: &Path,
    path: &str,
    method: &str,
    timeout: Duration,
) -> anyhow::Result<RpcTiming> {
    let (elapsed, raw) = exchange(socket, &request(path, method), method, timeout).await?;
    let (status, body) = parse_response(&raw)?;
    if status != 200 {
        bail!("{method}: HTTP status {status}");
    }
    let text = String::from_utf8_lossy(body);
    if !text.contains("<methodResponse>") || text.contains("<fault>") {
        bail!("{method}: not a successful XML-RPC response: {:.200}", text);
    }
    Ok(RpcTiming { elapsed, body_bytes: body.len() })
}

/// `GET path` on a fresh connection to `socket` (a `/metrics` scrape): the time to the
/// whole answer, and its body, which must come with status 200.
pub async fn get(
    socket: &Path,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(RpcTiming, String)> {
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: vigil-bench\r\n\r\n");
    let (elapsed, raw) = exchange(socket, req.as_bytes(), path, timeout).await?;
    let (status, body) = parse_response(&raw)?;
    if status != 200 {
        bail!("GET {path}: HTTP status {status}");
    }
    let text = String::from_utf8_lossy(body).into_owned();
    Ok((RpcTiming { elapsed, body_bytes: body.len() }, text))
}

/// Sends `req` on a fresh connection and reads until the server closes it.
async fn exchange(
    socket: &Path,
    req: &[u8],
    what: &str,
    timeout: Duration,
) -> anyhow::Result<(Duration, Vec<u8>)> {
    let t0 = Instant::now();
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(req).await?;
        let mut raw = Vec::with_capacity(64 << 10);
        stream.read_to_end(&mut raw).await?;
        std::io::Result::Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{what}: no answer within {timeout:?}"))?
        .with_context(|| format!("{what} on {}", socket.display()))?;
    Ok((t0.elapsed(), raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let r = String::from_utf8(request("/RPC2", "supervisor.getState")).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /RPC2 HTTP/1.0\r\nHost: localhost\r\n"));
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("<methodName>supervisor.getState</methodName>"));
    }

    #[test]
    fn response_parsing() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(raw).unwrap(), (200, &b"hello"[..]));
        let short = b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nhello";
        assert!(parse_response(short).is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
