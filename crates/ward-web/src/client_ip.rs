//! Who the client is, for rate limits and the auth log.
//!
//! A proxy's header is trusted only when configured: `WARD_TRUSTED_PROXY=fly` reads
//! `Fly-Client-IP` (which fly.io's edge sets and clients cannot override). Otherwise the
//! connecting address is the client; `X-Forwarded-For` is never trusted.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, Request};
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

/// Which proxy's client-address header to believe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustedProxy {
    /// None: the peer address is the client.
    #[default]
    None,
    /// fly.io: `Fly-Client-IP`.
    Fly,
}

impl TrustedProxy {
    /// Parses the `WARD_TRUSTED_PROXY` value.
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.map(str::trim) {
            None | Some("") => Ok(Self::None),
            Some("fly") => Ok(Self::Fly),
            Some(other) => Err(format!(
                "WARD_TRUSTED_PROXY {other:?} is not supported; use `fly` or leave it unset"
            )),
        }
    }
}

/// The client's address as determined under `proxy`.
pub fn client_ip(
    headers: &HeaderMap,
    extensions: &Extensions,
    proxy: TrustedProxy,
) -> Option<IpAddr> {
    if proxy == TrustedProxy::Fly {
        let from_header = headers
            .get("fly-client-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if from_header.is_some() {
            return from_header;
        }
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The rate-limit key of an address: IPv4 as is, IPv6 by its /64 (one subscriber
/// usually holds a whole /64, so per-address limits would be trivial to dodge).
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// tower-governor key extractor using [`client_ip`] and [`rate_key`]. Never fails: a
/// request with no known address shares one bucket rather than erroring.
#[derive(Debug, Clone, Copy)]
pub struct ClientKey(pub TrustedProxy);

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        Ok(client_ip(req.headers(), req.extensions(), self.0)
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), rate_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder();
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let mut r = r.body(()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        r
    }

    #[test]
    fn forwarded_headers_are_ignored_unless_a_proxy_is_trusted() {
        let r = req(
            "10.0.0.1:5000",
            &[("x-forwarded-for", "1.2.3.4"), ("fly-client-ip", "5.6.7.8")],
        );
        assert_eq!(
            ClientKey(TrustedProxy::None).extract(&r).unwrap(),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            ClientKey(TrustedProxy::Fly).extract(&r).unwrap(),
            "5.6.7.8".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a = req("[2001:db8:1:2:aaaa::1]:1", &[]);
        let b = req("[2001:db8:1:2:bbbb::2]:1", &[]);
        let c = req("[2001:db8:1:3::1]:1", &[]);
        let k = ClientKey(TrustedProxy::None);
        assert_eq!(k.extract(&a).unwrap(), k.extract(&b).unwrap());
        assert_ne!(k.extract(&a).unwrap(), k.extract(&c).unwrap());
    }

    #[test]
    fn a_request_without_an_address_still_gets_a_key() {
        let r = Request::builder().body(()).unwrap();
        assert!(ClientKey(TrustedProxy::None).extract(&r).is_ok());
    }
}
