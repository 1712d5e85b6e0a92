//! One question from one client, as the stages see it.

use std::{net::IpAddr, sync::Arc, time::Instant};

use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::{event::Transport, pipeline::group::Group};

/// Who asked: a device, or Hedgerow's own filtering check asking as a device of a group.
///
/// A check query takes the whole chain, so its answer is exactly what a device gets, but it
/// is nobody's attempt: the record stage leaves it out of the metrics and the query log
/// (so it opens no breach), and the rate limit does not charge it to the device whose
/// address it borrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A client on the network (every query the listeners read).
    #[default]
    Client,
    /// A filtering check run by Hedgerow itself ([`crate::checks`]).
    Check,
}

/// Whether the listener already charged a query to its client's rate limit: a repeat is
/// checked against the limit before the replay memo is asked ([`super::replay`]), and when
/// the memo has no answer the query goes down the chain with its token already spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// Not yet: the rate-limit stage takes a token.
    #[default]
    Unchecked,
    /// A token was taken.
    Admitted,
    /// The client was over its limit.
    OverLimit,
}

/// One question from one client, as the stages see it.
#[derive(Debug, Clone)]
pub struct Query {
    /// The client's address (the rate-limit and group key).
    pub client: IpAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// The question name as asked (case preserved, for the answer).
    pub name: Name,
    /// The question name in lower case without the trailing dot, for matching.
    pub key: String,
    /// The question type.
    pub qtype: RecordType,
    /// The question class.
    pub qclass: DNSClass,
    /// The client set the EDNS DO bit (DNSSEC records wanted).
    pub dnssec_ok: bool,
    /// The client set the CD bit (checking disabled).
    pub checking_disabled: bool,
    /// The client's group, set by the identify stage.
    pub group: Option<Arc<Group>>,
    /// The configured device (`[[device]]`) the query comes from, set by the identify stage.
    pub device: Option<Arc<str>>,
    /// When the query arrived.
    pub received: Instant,
    /// A device's query or a filtering check's (kept by [`Query::for_name`]).
    pub origin: Origin,
    /// Whether the rate limit has been applied already.
    pub admission: Admission,
}

impl Query {
    /// A query for `name`/`qtype` from `client`.
    ///
    /// ```
    /// use hedgerow::pipeline::{Query, Transport};
    /// use hickory_proto::rr::{Name, RecordType};
    /// let q = Query::new("127.0.0.1".parse().unwrap(), Transport::Udp,
    ///                    Name::from_ascii("WWW.Example.com.").unwrap(), RecordType::A);
    /// assert_eq!(q.key, "www.example.com");
    /// ```
    pub fn new(client: IpAddr, transport: Transport, name: Name, qtype: RecordType) -> Query {
        Query {
            client,
            transport,
            key: crate::names::key(&name),
            name,
            qtype,
            qclass: DNSClass::IN,
            dnssec_ok: false,
            checking_disabled: false,
            group: None,
            device: None,
            received: Instant::now(),
            origin: Origin::Client,
            admission: Admission::Unchecked,
        }
    }

    /// The same query for another name (used to resolve a rewrite target).
    pub fn for_name(&self, name: Name) -> Query {
        Query {
            key: crate::names::key(&name),
            name,
            ..self.clone()
        }
    }
}
