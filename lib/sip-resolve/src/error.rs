//! Errors returned by [`Resolver::resolve`](crate::Resolver::resolve) and the constructors.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// Why a SIP next hop could not be resolved.
///
/// The messages are meant for operators' logs, e.g.
/// `no SIP service for example.com (NAPTR/SRV/A/AAAA all empty)`.
/// The error is cheap to clone so one failure can be reported to every waiter of a
/// shared resolution.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The host part of the URI is neither an IP literal nor a valid domain name.
    #[error("invalid SIP host {host:?}: {reason}")]
    InvalidHost {
        /// The host as given in the request.
        host: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The combination of URI scheme, transport parameter and configured transports cannot
    /// be satisfied (e.g. a `sips:` URI with `;transport=udp`, RFC 3261 §26.2.1).
    #[error("cannot resolve {host}: {reason}")]
    InvalidRequest {
        /// The host as given in the request.
        host: String,
        /// What is wrong with the request.
        reason: String,
    },

    /// The domain does not exist (the final A/AAAA lookup answered NXDOMAIN).
    #[error("{host} does not exist (NXDOMAIN)")]
    NxDomain {
        /// The host as given in the request.
        host: String,
    },

    /// The domain exists but none of the lookups RFC 3263 prescribes for this request
    /// produced a usable address.
    #[error("no SIP service for {host} ({detail})")]
    NoRecords {
        /// The host as given in the request.
        host: String,
        /// Which lookups came back empty, e.g. `NAPTR/SRV/A/AAAA all empty`.
        detail: String,
    },

    /// The SRV records for the domain say the service is decidedly not available
    /// (a single SRV record whose target is `.`, RFC 2782).
    #[error("SIP service for {host} is explicitly unavailable (SRV target \".\")")]
    Unavailable {
        /// The host as given in the request.
        host: String,
    },

    /// A DNS query got no answer in time, or the whole resolution exceeded its deadline.
    #[error("DNS timeout resolving {host} ({query}) after {} ms", .after.as_millis())]
    Timeout {
        /// The host as given in the request.
        host: String,
        /// The query that timed out (`"NAPTR example.com."`), or `"deadline"` when the
        /// overall deadline of [`Options::deadline`](crate::Options::deadline) expired.
        query: String,
        /// Time spent in the resolution until the timeout was reported.
        after: Duration,
    },

    /// A DNS query failed for another reason (SERVFAIL, REFUSED, network error, ...).
    #[error("DNS lookup {query} for {host} failed: {source}")]
    Dns {
        /// The host as given in the request.
        host: String,
        /// The failed query, e.g. `"A sip.example.com."`.
        query: String,
        /// The resolver library's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },

    /// The resolver could not be configured (unreadable `/etc/resolv.conf`, no name server).
    #[error("DNS resolver configuration: {0}")]
    Config(String),
}

impl ResolveError {
    /// True for [`ResolveError::Timeout`]: the caller may want to retry later rather than
    /// treat the destination as non-existent.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}
