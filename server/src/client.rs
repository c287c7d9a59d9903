//! Who a request comes from. The console listens on loopback behind nginx on the real host, so the
//! peer of every request there is nginx: when the peer is on loopback, the client is the address
//! nginx passes (`X-Real-IP`, else the last `X-Forwarded-For` entry, the one nginx appended). A peer
//! elsewhere is the client itself, whatever its headers claim.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

/// The client's address, if the connection's peer is known.
pub fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !peer.is_loopback() {
        return Some(peer);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = header("x-real-ip")
        .map(str::trim)
        .or_else(|| {
            header("x-forwarded-for")
                .and_then(|f| f.rsplit(',').next())
                .map(str::trim)
        })
        .and_then(|ip| ip.parse().ok());
    Some(forwarded.unwrap_or(peer))
}

/// The rate limiter's key: the client address as above.
#[derive(Debug, Clone, Copy)]
pub struct ClientKey;

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        client_ip(peer, request.headers()).ok_or(GovernorError::UnableToExtractKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_only_from_a_loopback_peer() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let nginx: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let outsider: SocketAddr = "203.0.113.7:50000".parse().unwrap();
        let real = headers(&[("x-real-ip", "198.51.100.9")]);
        let chain = headers(&[("x-forwarded-for", "10.9.9.9, 198.51.100.9")]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(Some(nginx), &real), Some(ip("198.51.100.9")));
        assert_eq!(client_ip(Some(nginx), &chain), Some(ip("198.51.100.9")));
        assert_eq!(
            client_ip(Some(nginx), &HeaderMap::new()),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(client_ip(Some(outsider), &real), Some(ip("203.0.113.7")));
        assert_eq!(
            client_ip(Some(nginx), &headers(&[("x-real-ip", "junk")])),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(client_ip(None, &real), None);
    }
}
