//! The UDP listener loop.
//!
//! hickory-server's `Server` spawns a task for every datagram and hands every answer to a
//! channel that another task writes to the socket. Profiling `hedgerow serve` under dnsperf
//! showed that machinery, not the pipeline, dominating a cached answer's cost, so UDP gets this
//! loop instead. It reads and writes datagrams in batches ([`super::batch`]) and answers cached
//! and blocked names inline, without a spawn or a channel hop; only a query that has to wait
//! (an upstream exchange) is moved to its own task, which sends its own answer.
//!
//! Plain queries (nearly all of them) take the fast path: a repeat of a question whose answer
//! the pipeline's replay memo keeps ([`crate::pipeline::replay`]) is answered with a copy of
//! those bytes; any other is read with [`WireQuery`], run down the chain and answered with
//! [`crate::wire`]'s writer (a cache hit is a copy of pre-encoded bytes), and what it was
//! answered with is offered to the memo. Anything else —
//! other opcodes, classes or EDNS versions, malformed bodies — goes through hickory's
//! `Request` and the same [`Handler`] as TCP, which stays on hickory-server.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use hickory_proto::{
    op::{Header, MessageType},
    rr::Record,
    serialize::binary::{BinDecodable, BinDecoder, BinEncoder},
};
use hickory_server::{
    net::{runtime::TokioTime, xfer::Protocol, NetError},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use prometheus::IntCounter;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{
    batch::{Received, Replies},
    panics::{guard, CatchUnwind},
    Handler, MAX_UDP_PAYLOAD,
};
use crate::{
    pipeline::{
        replay::{Now, Replay, Replayed},
        Admission, Answer, Pipeline, Query, Transport,
    },
    wire::{self, RawQuery, WireQuery},
};

/// Writes one response to one client.
#[derive(Clone)]
struct UdpReply {
    socket: Arc<UdpSocket>,
    client: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        // RFC 1035 §4.2.1 / RFC 6891: the requestor's advertised size (512 without EDNS);
        // the encoder sets TC and drops records that do not fit.
        encoder.set_max_size(response.edns().map_or(512, |e| e.max_payload()));
        let info = response.destructive_emit(&mut encoder)?;
        send(&self.socket, &bytes, self.client).await?;
        Ok(info)
    }
}

/// Sends at once when the socket has room (the usual case), else waits for room.
async fn send(socket: &UdpSocket, bytes: &[u8], client: SocketAddr) -> std::io::Result<()> {
    match socket.try_send_to(bytes, client) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            socket.send_to(bytes, client).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// A plain query answered down the chain: the response, and the query and answer it was
/// made from (for the replay memo).
struct Finished {
    out: Vec<u8>,
    query: Query,
    answer: Answer,
}

/// Answers a plain query into `out`: `pipeline`, then [`crate::wire`]'s writer. `None`
/// while draining for shutdown (silence sends the client to its other server).
async fn answer_plain(
    handler: &Handler,
    pipeline: &Pipeline,
    client: SocketAddr,
    mut wire_query: WireQuery,
    admission: Admission,
    mut out: Vec<u8>,
) -> Option<Finished> {
    let _guard = handler.drain.enter()?;
    let mut query = query_from_wire(&mut wire_query, client.ip());
    query.admission = admission;
    let answer = pipeline.resolve(&mut query).await;
    write_answer(&wire_query, &query, &answer, MAX_UDP_PAYLOAD, &mut out);
    Some(Finished { out, query, answer })
}

/// The pipeline's view of `wire_query` from `client`. The name moves into it; pass the query
/// back to [`write_answer`] with the same `WireQuery`.
pub fn query_from_wire(wire_query: &mut WireQuery, client: IpAddr) -> Query {
    let name = std::mem::take(&mut wire_query.name);
    let mut query = Query::new(client, Transport::Udp, name, wire_query.qtype);
    query.dnssec_ok = wire_query.edns.is_some_and(|e| e.dnssec_ok);
    query.checking_disabled = wire_query.checking_disabled();
    query
}

/// Writes the response to `wire_query` (read into `query`, which the pipeline answered with
/// `answer`) into `out`: a cache hit's pre-encoded bytes when they were made for this name,
/// else the records encoded now.
pub fn write_answer(
    wire_query: &WireQuery,
    query: &Query,
    answer: &Answer,
    ours: u16,
    out: &mut Vec<u8>,
) {
    let authentic_data = answer.authentic_data && !query.checking_disabled;
    wire::write_response(
        wire_query,
        &query.name,
        answer.rcode,
        authentic_data,
        ours,
        out,
        |out| match answer.encoded() {
            Some((encoded, ttl)) if encoded.is_for(&query.key) => {
                Ok(encoded.write(out, |stored| ttl.apply(stored)))
            }
            _ => {
                let sections = answer.sections_as_sent();
                wire::write_records(
                    out,
                    &query.name,
                    [
                        &sections.answers,
                        &sections.authorities,
                        &sections.additionals,
                    ],
                    query.dnssec_ok,
                )
            }
        },
    );
}

/// Answers queries arriving on `socket` until `shutdown` is cancelled.
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
    panics: IntCounter,
) {
    let mut received = Received::new();
    let mut replies = Replies::default();
    loop {
        tokio::select! {
            result = received.recv(&socket) => if let Err(error) = result {
                // ICMP errors from earlier sends surface here on Linux; keep serving.
                tracing::debug!(%error, "UDP receive error");
                continue;
            },
            _ = shutdown.cancelled() => break,
        }
        // One pipeline and one reading of the clocks for the batch.
        let pipeline = handler.pipeline.load_full();
        let now = pipeline.replay().map(Replay::now);
        for (bytes, client) in received.iter() {
            match client {
                Some(client) if client.port() != 0 => {
                    // A panic while answering costs this datagram, not the listener.
                    guard(&panics, "udp", || {
                        let at = Datagram {
                            bytes,
                            client,
                            socket: &socket,
                            handler: &handler,
                            pipeline: &pipeline,
                            now,
                        };
                        at.handle(&mut replies, &panics)
                    });
                }
                _ => {}
            }
        }
        replies.flush(&socket).await;
    }
}

/// One datagram and what it is answered with.
struct Datagram<'a> {
    bytes: &'a [u8],
    client: SocketAddr,
    socket: &'a Arc<UdpSocket>,
    handler: &'a Arc<Handler>,
    pipeline: &'a Arc<Pipeline>,
    /// The batch's time, when the pipeline has a replay memo.
    now: Option<Now>,
}

impl Datagram<'_> {
    /// Answers into `replies` when the answer is at hand (kept for a repeat, or made
    /// without waiting), or spawns a task that answers later.
    fn handle(&self, replies: &mut Replies, panics: &IntCounter) {
        match RawQuery::scan(self.bytes) {
            Some(raw) => self.plain(raw, replies, panics),
            None => self.other(panics),
        }
    }

    fn plain(&self, raw: RawQuery<'_>, replies: &mut Replies, panics: &IntCounter) {
        let client = self.client;
        let mut out = replies.buffer();
        let replay = self.pipeline.replay().zip(self.now);
        let admission = match replay {
            Some(_) if self.handler.drain.draining() => return,
            Some((replay, now)) => match replay.answer(&raw, client.ip(), now, &mut out) {
                Replayed::Answered => return replies.push(out, client),
                Replayed::Miss(admission) => admission,
            },
            None => Admission::Unchecked,
        };
        // A name the scan accepts and the decoder does not is left to hickory (whose chain
        // charges the rate limit again: a malformed name's sender pays twice).
        let Some(wire_query) = raw.read() else {
            return self.other(panics);
        };
        let stamp = replay.map(|(replay, now)| replay.stamp(now));
        let (handler, pipeline) = (self.handler.clone(), self.pipeline.clone());
        let mut work = Box::pin(async move {
            answer_plain(&handler, &pipeline, client, wire_query, admission, out).await
        });
        // Cached answers and local decisions finish on the first poll; only queries that
        // wait for an upstream get a task of their own.
        match poll_once(work.as_mut()) {
            Poll::Ready(Some(done)) => {
                if let (Some((replay, now)), Some(stamp)) = (replay, stamp) {
                    replay.keep(stamp, &raw, &done.query, &done.answer, &done.out, now);
                }
                replies.push(done.out, client)
            }
            Poll::Ready(None) => {}
            Poll::Pending => {
                let socket = self.socket.clone();
                let work = CatchUnwind::pinned(work, panics.clone(), "udp");
                tokio::spawn(async move {
                    if let Some(Some(done)) = work.await {
                        if let Err(error) = send(&socket, &done.out, client).await {
                            tracing::debug!(%error, "failed to send a response");
                        }
                    }
                });
            }
        }
    }

    /// Anything but a plain query: hickory's `Request` and the same [`Handler`] as TCP.
    fn other(&self, panics: &IntCounter) {
        let (bytes, client, socket) = (self.bytes, self.client, self.socket);
        let request = match Request::from_bytes(bytes.to_vec(), client, Protocol::Udp) {
            Ok(request) => request,
            Err(_) => {
                form_error(socket, bytes, client);
                return;
            }
        };
        if request.metadata.message_type == MessageType::Response {
            // Never answer responses: that would make us a reflector.
            return;
        }
        let reply = UdpReply {
            socket: socket.clone(),
            client,
        };
        let handler = self.handler.clone();
        let mut work = Box::pin(async move {
            handler
                .handle_request::<_, TokioTime>(&request, reply)
                .await;
        });
        if poll_once(work.as_mut()).is_pending() {
            tokio::spawn(CatchUnwind::pinned(work, panics.clone(), "udp"));
        }
    }
}

fn poll_once<T>(fut: Pin<&mut (impl Future<Output = T> + ?Sized)>) -> Poll<T> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx)
}

/// FORMERR for a datagram with a readable header but an unreadable body; nothing for less.
fn form_error(socket: &UdpSocket, bytes: &[u8], client: SocketAddr) {
    if let Some(reply) = form_error_reply(bytes) {
        let _ = socket.try_send_to(&reply, client);
    }
}

/// The FORMERR reply to a message with a readable header but an unreadable body; `None` for
/// less, or for a response (never answered: that would make us a reflector).
pub(crate) fn form_error_reply(bytes: &[u8]) -> Option<[u8; 12]> {
    let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut reply = [0u8; 12];
    reply[..2].copy_from_slice(&header.metadata.id.to_be_bytes());
    // QR = 1, same opcode, RCODE = FORMERR; all counts zero.
    reply[2] = 0x80 | (u8::from(header.metadata.op_code) << 3);
    reply[3] = 0x01;
    Some(reply)
}
