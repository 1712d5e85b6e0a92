//! The DNS listeners — UDP by our own batched loop (plain queries read and answered with
//! [`crate::wire`]), TCP by our own accept loop with connection caps (`tcp.rs`) — and the
//! bridge ([`Handler`]) that turns a hickory request into a pipeline [`Query`] and the
//! pipeline's [`Answer`](crate::pipeline::Answer) into a response (TCP, and unusual UDP
//! queries).
//!
//! The pipeline in force sits behind an [`ArcSwap`], so a reload swaps it between two queries
//! without dropping any.
//!
//! Under abuse: a panic while answering costs one query or connection (`panics.rs`); a
//! listener that ends anyway is reported by [`Health`] and [`Listeners::failed`], so the
//! process can exit and be restarted rather than live on half-dead; descriptors are shared
//! out by [`descriptors::Budget`].

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
};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::{
    config::ServerConfig,
    metrics::Metrics,
    pipeline::{Pipeline, Query, Transport},
};

use drain::Drain;

/// Our EDNS UDP payload size (DNS flag day 2020); larger answers are truncated (TC).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The kernel receive buffer asked for on each UDP socket. Linux's default (208 KiB) holds
/// about 200 small queries: at 10,000 queries a second, 20 ms without the CPU (another
/// process's turn, a reload, a page fault) and the kernel drops every further query until the
/// loop reads again — the soak (`benches/soak.sh`) lost 4–8 % of its queries so, and its
/// in-group probe saw timeouts. 4 MiB holds several thousand, about half a second at that
/// rate, and a query answered late beats one the device must time out and resend. The kernel
/// caps it at `net.core.rmem_max` (raise that sysctl for the full size).
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;

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

pub mod accept;
mod batch;
pub mod descriptors;
mod drain;
mod health;
mod panics;
mod tcp;
mod udp;

pub use health::Health;

/// Test helpers for other modules' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Health;

    /// Registers a listener called `name` in `health` and marks it down.
    pub(crate) fn mark_down(health: &Health, name: &str) {
        let index = health.register(name.to_string());
        health.down(index, "ended");
    }
}
pub use tcp::MAX_QUERY as MAX_TCP_QUERY;
/// For the fuzz target that reads datagrams as the UDP listener does.
pub(crate) use udp::form_error_reply;
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

    /// Whether the pipeline in force serves `client` (it belongs to a group).
    fn admits(&self, client: std::net::IpAddr) -> bool {
        self.pipeline.load().admits(client)
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

/// Asks for [`UDP_RECEIVE_BUFFER`]; the kernel may grant less (`net.core.rmem_max`), which is
/// logged with the hint, not an error: the socket works with any buffer.
fn grow_receive_buffer(socket: &UdpSocket, addr: SocketAddr) {
    let socket = socket2::SockRef::from(socket);
    if let Err(error) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::warn!(%addr, %error, "cannot set the UDP receive buffer");
        return;
    }
    // Linux reports twice the size it set.
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < UDP_RECEIVE_BUFFER {
        tracing::info!(
            %addr,
            granted,
            wanted = UDP_RECEIVE_BUFFER,
            "UDP receive buffer smaller than wanted: raise the sysctl net.core.rmem_max"
        );
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
            // Port 0 (tests): the OS picks a free UDP port, whose TCP twin may be taken by
            // some client connection; pick again rather than fail.
            let tries = if addr.port() == 0 { 20 } else { 1 };
            for attempt in 1..=tries {
                let u = UdpSocket::bind(addr)
                    .await
                    .map_err(|source| ListenError::Bind {
                        addr,
                        protocol: "UDP",
                        source,
                    })?;
                // TCP on the same port as UDP, also when the UDP port was picked by the OS.
                let bound = u.local_addr().unwrap_or(addr);
                grow_receive_buffer(&u, bound);
                match TcpListener::bind(bound).await {
                    Ok(t) => {
                        udp.push(u);
                        tcp.push(t);
                        break;
                    }
                    Err(e) if attempt < tries && e.kind() == std::io::ErrorKind::AddrInUse => {}
                    Err(source) => {
                        return Err(ListenError::Bind {
                            addr: bound,
                            protocol: "TCP",
                            source,
                        })
                    }
                }
            }
        }
        Ok(Sockets { udp, tcp })
    }

    /// The kernel receive buffer of each UDP socket, in bytes, as the kernel reports it
    /// (Linux reports twice what was set, for its bookkeeping).
    pub fn udp_receive_buffers(&self) -> Vec<usize> {
        self.udp
            .iter()
            .map(|s| socket2::SockRef::from(s).recv_buffer_size().unwrap_or(0))
            .collect()
    }

    /// The bound addresses (UDP and TCP share each port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Starts serving `handler` on every socket: UDP with our own batched loop, TCP with our
    /// own accept loop under `options`' caps.
    pub fn serve(self, handler: Handler, options: ServeOptions) -> Listeners {
        let shutdown = CancellationToken::new();
        let health = Health::default();
        let shared = Arc::new(handler.clone());
        let udp_panics = options.metrics.panics.with_label_values(&["udp"]);
        let mut tasks = Vec::new();
        for socket in self.udp {
            let name = format!(
                "dns udp {}",
                socket.local_addr().map_or("?".into(), |a| a.to_string())
            );
            let socket = Arc::new(socket);
            // One receive loop per worker thread, all on the same socket.
            let loops = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4);
            for i in 0..loops {
                tasks.push(supervise(
                    &health,
                    format!("{name} loop {i}"),
                    &shutdown,
                    udp::serve(
                        socket.clone(),
                        shared.clone(),
                        shutdown.clone(),
                        udp_panics.clone(),
                    ),
                ));
            }
        }
        let slots = tcp::Slots::new(
            options.budget,
            options.metrics.connections_open.with_label_values(&["tcp"]),
        );
        let tcp_shared = Arc::new(tcp::Shared {
            handler: shared,
            slots,
            idle_timeout: options.tcp_idle_timeout,
            metrics: options.metrics.clone(),
            shutdown: shutdown.clone(),
        });
        for listener in self.tcp {
            let name = format!(
                "dns tcp {}",
                listener.local_addr().map_or("?".into(), |a| a.to_string())
            );
            tasks.push(supervise(
                &health,
                name,
                &shutdown,
                tcp::serve(listener, tcp_shared.clone()),
            ));
        }
        Listeners {
            tasks,
            shutdown,
            drain: handler.drain.clone(),
            health,
        }
    }
}

/// How the listeners run: the TCP idle timeout and connection caps, and where they count.
#[derive(Clone)]
pub struct ServeOptions {
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Connection caps.
    pub budget: descriptors::Budget,
    /// Where panics and refused connections are counted.
    pub metrics: Arc<Metrics>,
}

impl ServeOptions {
    /// The options `server` asks for, with caps lowered to fit `open_file_limit`
    /// descriptors (the caps in force are logged).
    pub fn new(server: &ServerConfig, open_file_limit: u64, metrics: Arc<Metrics>) -> Self {
        let budget = descriptors::Budget::new(server, open_file_limit);
        tracing::info!(
            tcp = budget.tcp,
            tcp_per_client = budget.tcp_per_client,
            tcp_outsiders = budget.tcp_outsiders,
            http = budget.http,
            "connection caps"
        );
        ServeOptions {
            tcp_idle_timeout: server.tcp_idle_timeout,
            budget,
            metrics,
        }
    }
}

/// Runs a listener task; if it ends (or panics) before shutdown, marks it down in `health`.
fn supervise(
    health: &Health,
    name: String,
    shutdown: &CancellationToken,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let index = health.register(name);
    let (health, shutdown) = (health.clone(), shutdown.clone());
    tokio::spawn(async move {
        // The listener runs in a task of its own so that a panic in its loop is seen here.
        let panicked = tokio::spawn(task).await.is_err_and(|e| e.is_panic());
        if !shutdown.is_cancelled() {
            health.down(index, if panicked { "panicked" } else { "ended" });
        }
    })
}

/// Running DNS listeners.
pub struct Listeners {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
    drain: Drain,
    health: Health,
}

impl Listeners {
    /// Each listener's state, for `/healthz`.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Completes, saying which, when a listener has ended or panicked before shutdown: the
    /// process should then exit non-zero so that systemd restarts it.
    pub fn failed(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let health = self.health.clone();
        async move { health.failed().await }
    }

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
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            for task in self.tasks {
                let _ = task.await;
            }
        })
        .await;
    }
}
