use std::net::IpAddr;

/// Why an outbound request was refused before it was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Not an absolute `http`/`https` URL with a host.
    #[error("invalid URL: {0}")]
    BadUrl(String),
    /// The host is, or resolves to, an address that is not public.
    #[error("refused to connect to {host}: {addr} is not a public address")]
    Forbidden { host: String, addr: IpAddr },
    /// The host name does not resolve.
    #[error("could not resolve {host}: {reason}")]
    Unresolvable { host: String, reason: String },
    /// A malformed `ROUNDHOUSE_OUTBOUND_ALLOWLIST` entry.
    #[error("invalid allowlist entry `{0}`: expected a host name, an IP address or a CIDR")]
    BadAllowlist(String),
}

impl OutboundError {
    /// Whether trying again later could help: only a failed DNS lookup can
    /// change; a bad URL or a forbidden address never will.
    pub fn is_retryable(&self) -> bool {
        matches!(self, OutboundError::Unresolvable { .. })
    }
}
