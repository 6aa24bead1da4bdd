//! Event and Subscription-State (RFC 6665 §8.2).

use super::params::{Params, param_u32, take_params};
use crate::scan::{self, take_token};

/// An Event value, e.g. `presence;id=42` or `presence.winfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    event_type: &'a str,
    params: Params<'a>,
}

impl<'a> Event<'a> {
    /// Parses `event-type *( SEMI event-param )`.
    pub fn parse(s: &'a [u8]) -> Option<Event<'a>> {
        let s = scan::trim_lws(s);
        let end = take_token(s, 0);
        if end == 0 {
            return None;
        }
        let event_type = scan::utf8(s.get(..end)?)?;
        let (params, p_end) = take_params(s, end)?;
        (p_end == s.len()).then_some(Event { event_type, params })
    }

    /// The whole event type, e.g. `presence.winfo`.
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The event package, i.e. the event type up to the first `.` (`presence`).
    pub fn package(&self) -> &'a str {
        self.event_type.split_once('.').map_or(self.event_type, |(p, _)| p)
    }

    /// The event template(s) after the package, e.g. `winfo`.
    pub fn template(&self) -> Option<&'a str> {
        self.event_type.split_once('.').map(|(_, t)| t)
    }

    /// The `id` parameter, which tells apart subscriptions of one dialog.
    pub fn id(&self) -> Option<&'a str> {
        self.params.get("id").flatten()
    }

    /// All parameters (including `id`).
    pub fn params(&self) -> Params<'a> {
        self.params
    }
}

/// The state of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubState<'a> {
    /// `active`
    Active,
    /// `pending`
    Pending,
    /// `terminated`
    Terminated,
    /// An extension state.
    Other(&'a str),
}

/// A Subscription-State value, e.g. `terminated;reason=timeout;retry-after=30`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionState<'a> {
    state: SubState<'a>,
    expires: Option<u32>,
    retry_after: Option<u32>,
    params: Params<'a>,
}

impl<'a> SubscriptionState<'a> {
    /// Parses `substate-value *( SEMI subexp-params )`; `expires` and `retry-after` must be
    /// delta-seconds when present.
    pub fn parse(s: &'a [u8]) -> Option<SubscriptionState<'a>> {
        let s = scan::trim_lws(s);
        let end = take_token(s, 0);
        if end == 0 {
            return None;
        }
        let word = scan::utf8(s.get(..end)?)?;
        let state = if word.eq_ignore_ascii_case("active") {
            SubState::Active
        } else if word.eq_ignore_ascii_case("pending") {
            SubState::Pending
        } else if word.eq_ignore_ascii_case("terminated") {
            SubState::Terminated
        } else {
            SubState::Other(word)
        };
        let (params, p_end) = take_params(s, end)?;
        if p_end != s.len() {
            return None;
        }
        Some(SubscriptionState {
            state,
            expires: param_u32(&params, "expires").ok()?,
            retry_after: param_u32(&params, "retry-after").ok()?,
            params,
        })
    }

    /// The state.
    pub fn state(&self) -> SubState<'a> {
        self.state
    }

    /// The `expires` parameter.
    pub fn expires(&self) -> Option<u32> {
        self.expires
    }

    /// The `reason` parameter (`deactivated`, `probation`, `rejected`, `timeout`, `giveup`,
    /// `noresource`, `invariant`, or an extension).
    pub fn reason(&self) -> Option<&'a str> {
        self.params.get("reason").flatten()
    }

    /// The `retry-after` parameter.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// All parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event() {
        let e = Event::parse(b"presence\r\n ;id=1;x").unwrap();
        assert_eq!(e.package(), "presence");
        assert_eq!(e.id(), Some("1"));
        assert_eq!(e.params().get("x"), Some(None));
        let e = Event::parse(b"presence.winfo").unwrap();
        assert_eq!((e.package(), e.template()), ("presence", Some("winfo")));
        assert!(Event::parse(b"").is_none());
        assert!(Event::parse(b"presence;").is_none());
        assert!(Event::parse(b"pres ence").is_none());
    }

    #[test]
    fn subscription_state() {
        let s = SubscriptionState::parse(b"terminated;reason=timeout;retry-after=30").unwrap();
        assert_eq!(s.state(), SubState::Terminated);
        assert_eq!(s.reason(), Some("timeout"));
        assert_eq!(s.retry_after(), Some(30));
        let s = SubscriptionState::parse(b"Active ; expires = 3600").unwrap();
        assert_eq!(s.state(), SubState::Active);
        assert_eq!(s.expires(), Some(3600));
        assert_eq!(SubscriptionState::parse(b"waiting").unwrap().state(), SubState::Other("waiting"));
        assert!(SubscriptionState::parse(b"active;expires=soon").is_none());
    }
}
