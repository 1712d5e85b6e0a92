//! The DNS listeners — TCP served by hickory-server, UDP by our own batched loop (plain queries
//! read and answered with [`crate::wire`]) — and the bridge ([`Handler`]) that turns a hickory
//! request into a pipeline [`Query`] and the pipeline's [`Answer`](crate::pipeline::Answer)
//! into a response (TCP, and unusual UDP queries).
//!
//! The pipeline in force sits behind an [`ArcSwap`], so a reload swaps it between two queries
//! without dropping any.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Record},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
    Server,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Pipeline, Query, Transport};

use drain::Drain;

/// Our EDNS UDP payload size (DNS flag day 2020); larger answers are truncated (TC).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Per-connection buffer of responses waiting to be written on TCP.
const TCP_RESPONSE_BUFFER: usize = 32;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({protocol}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// "UDP" or "TCP".
        protocol: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

mod batch;
mod drain;
mod udp;

pub use udp::{query_from_wire, write_answer};

/// hickory's request handler, bridging into the pipeline in force.
#[derive(Clone)]
pub struct Handler {
    pipeline: Arc<ArcSwap<Pipeline>>,
    drain: Drain,
}

impl Handler {
    /// A handler running queries through whatever pipeline `pipeline` holds.
    pub fn new(pipeline: Arc<ArcSwap<Pipeline>>) -> Handler {
        Handler {
            pipeline,
            drain: Drain::default(),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let Some(_guard) = self.drain.enter() else {
            // Draining for shutdown: stay silent so the client asks its other server.
            return dropped(request);
        };
        let client_edns = request.edns.as_ref();
        let mut edns = Edns::new();
        edns.set_max_payload(
            client_edns
                .map(|e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD))
                .unwrap_or(512),
        );
        edns.set_dnssec_ok(client_edns.is_some_and(|e| e.flags().dnssec_ok));
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if client_edns.is_some() {
            builder.edns(&edns);
        }

        let query = match (request.metadata.op_code, request.queries.queries()) {
            (OpCode::Query, [q])
                if q.query_class() == DNSClass::IN || q.query_class() == DNSClass::CH =>
            {
                q
            }
            (OpCode::Query, _) => {
                return send(
                    response,
                    builder.error_msg(&request.metadata, ResponseCode::FormErr),
                    request,
                )
                .await;
            }
            _ => {
                return send(
                    response,
                    builder.error_msg(&request.metadata, ResponseCode::NotImp),
                    request,
                )
                .await;
            }
        };
        if client_edns.is_some_and(|e| e.version() > 0) {
            // RFC 6891 §6.1.3: an EDNS version we do not implement gets BADVERS (a client then
            // retries with version 0; tests/binary.rs checks this with dig).
            return send(
                response,
                builder.error_msg(&request.metadata, ResponseCode::BADVERS),
                request,
            )
            .await;
        }

        let mut q = Query::new(
            request.src().ip(),
            match request.protocol() {
                Protocol::Udp => Transport::Udp,
                _ => Transport::Tcp,
            },
            query.original().name().clone(),
            query.query_type(),
        );
        q.qclass = query.query_class();
        q.dnssec_ok = edns.flags().dnssec_ok;
        q.checking_disabled = request.metadata.checking_disabled;

        let pipeline = self.pipeline.load_full();
        let answer = pipeline.resolve(&mut q).await;

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        metadata.authentic_data = answer.authentic_data && !q.checking_disabled;
        metadata.response_code = answer.rcode;
        let sections = answer.sections_as_sent();
        let strip = |r: &&Record| q.dnssec_ok || !r.record_type().is_dnssec();
        let message = builder.build(
            metadata,
            sections.answers.iter().filter(strip),
            sections.authorities.iter().filter(strip),
            std::iter::empty(),
            sections.additionals.iter().filter(strip),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "failed to send a response");
                dropped(request)
            }
        }
    }
}

/// What hickory is told when no response was sent.
fn dropped(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

async fn send<'a, R: ResponseHandler>(
    mut response: R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(_) => dropped(request),
    }
}

/// Sockets bound for DNS: one UDP socket and one TCP listener per address.
pub struct Sockets {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Sockets {
    /// Binds every address (port 0 picks a free port, as tests do).
    pub async fn bind(addrs: &[SocketAddr]) -> Result<Sockets, ListenError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in addrs {
            let u = UdpSocket::bind(addr)
                .await
                .map_err(|source| ListenError::Bind {
                    addr,
                    protocol: "UDP",
                    source,
                })?;
            // TCP on the same port as UDP, also when the UDP port was picked by the OS.
            let bound = u.local_addr().unwrap_or(addr);
            let t = TcpListener::bind(bound)
                .await
                .map_err(|source| ListenError::Bind {
                    addr: bound,
                    protocol: "TCP",
                    source,
                })?;
            udp.push(u);
            tcp.push(t);
        }
        Ok(Sockets { udp, tcp })
    }

    /// The bound addresses (UDP and TCP share each port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Starts serving `handler` on every socket: UDP with our own batched loop, TCP
    /// with hickory-server (pipelining, idle timeouts, framing).
    pub fn serve(self, handler: Handler, tcp_idle_timeout: Duration) -> Listeners {
        let shutdown = CancellationToken::new();
        let shared = Arc::new(handler.clone());
        let mut udp = Vec::new();
        for socket in self.udp {
            let socket = Arc::new(socket);
            // One receive loop per worker thread, all on the same socket.
            for _ in 0..std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4)
            {
                udp.push(tokio::spawn(udp::serve(
                    socket.clone(),
                    shared.clone(),
                    shutdown.clone(),
                )));
            }
        }
        let drain = handler.drain.clone();
        let mut tcp = Server::new(handler);
        for l in self.tcp {
            tcp.register_listener(l, tcp_idle_timeout, TCP_RESPONSE_BUFFER);
        }
        Listeners {
            tcp,
            udp,
            shutdown,
            drain,
        }
    }
}

/// Running DNS listeners.
pub struct Listeners {
    tcp: Server<Handler>,
    udp: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
    drain: Drain,
}

impl Listeners {
    /// Stops taking new queries, lets those in flight finish (up to `grace`), then stops the
    /// listeners.
    pub async fn shutdown(self, grace: Duration) {
        let left = self.drain.drain(grace).await;
        if left > 0 {
            tracing::warn!(
                left,
                "grace period over; abandoning queries still in flight"
            );
        }
        self.stop().await;
    }

    /// Stops accepting, then waits (up to a second) for the listener tasks to end.
    async fn stop(mut self) {
        self.shutdown.cancel();
        self.tcp.shutdown_token().cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.tcp.block_until_done().await;
            for task in self.udp {
                let _ = task.await;
            }
        })
        .await;
    }
}
