//! The cluster's HTTP side: the Raft RPC endpoints peers call, `/cluster`,
//! `/cluster/members`, and [`gate`], the middleware that makes every node
//! answer the API like a single node would.
//!
//! The gate, for the data routes (`/kv...`, `/store`) and the membership
//! routes:
//! - a read with `?consistency=local` is served from this node's state;
//! - on the leader, a read first passes openraft's `ensure_linearizable`
//!   (ReadIndex), a write goes to Raft from the handler (`AppState::submit`);
//! - on a follower, the whole request (method, path and query, auth and
//!   content type, body) is proxied to the leader's HTTP port with a request
//!   id, and the leader's status, headers and body are relayed;
//! - with no leader known or reachable within the quorum timeout: 503
//!   `{"error": "no quorum: ..."}`.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::web::{self, Data};
use actix_web::{Error, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use openraft::BasicNode;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{ServerState, error::ChangeMembershipError};
use serde::Deserialize;
use serde::Serialize;

use super::types::{NodeId, TypeConfig};
use super::{ClusterNode, REQUEST_ID};
use crate::server::body::JsonBody;
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// The header carrying a forwarded write's request id (the leader's state
/// machine de-duplicates by it).
pub const REQUEST_ID_HEADER: &str = "x-kvstore-request-id";
/// How many times a request was forwarded already (a leader change while a
/// request is in flight may need one more hop; more would be a loop).
pub const HOPS_HEADER: &str = "x-kvstore-hops";
const MAX_HOPS: u32 = 2;
/// Largest Raft RPC body: a full append of the largest entries.
const RPC_LIMIT: usize = 1 << 30;

fn node(state: &AppState) -> Result<Arc<ClusterNode>, ApiError> {
    state
        .cluster
        .clone()
        .ok_or_else(|| ApiError::Internal("not a cluster node".into()))
}

async fn read_all(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn json_ok<T: Serialize>(value: &T) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// `POST /raft/append`: a peer's AppendEntries.
pub async fn append(state: Data<AppState>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let node = node(&state)?;
    let bytes = read_all(body, RPC_LIMIT).await?;
    let rpc: AppendEntriesRequest<TypeConfig> =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let raft = node.raft.clone();
    let res = node
        .runtime
        .spawn(async move { raft.append_entries(rpc).await })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    json_ok(&res)
}

/// `POST /raft/vote`: a candidate's RequestVote.
pub async fn vote(state: Data<AppState>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let node = node(&state)?;
    let bytes = read_all(body, RPC_LIMIT).await?;
    let rpc: VoteRequest<NodeId> =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let raft = node.raft.clone();
    let res = node
        .runtime
        .spawn(async move { raft.vote(rpc).await })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    json_ok(&res)
}

/// `POST /raft/snapshot`: one chunk of the leader's snapshot.
pub async fn snapshot(state: Data<AppState>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let node = node(&state)?;
    let bytes = read_all(body, RPC_LIMIT).await?;
    let rpc: InstallSnapshotRequest<TypeConfig> =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let raft = node.raft.clone();
    let res = node
        .runtime
        .spawn(async move { raft.install_snapshot(rpc).await })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    json_ok(&res)
}

#[derive(Serialize)]
struct NodeView {
    id: NodeId,
    addr: String,
    role: &'static str,
    matched_index: Option<u64>,
}

#[derive(Serialize)]
struct ClusterView {
    node_id: NodeId,
    leader: Option<NodeId>,
    term: u64,
    members: Vec<NodeId>,
    commit_index: u64,
    applied_index: u64,
    nodes: Vec<NodeView>,
}

fn view(node: &ClusterNode) -> ClusterView {
    let metrics = node.raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let leader = m.current_leader;
    let nodes = membership
        .nodes()
        .map(|(id, n): (&NodeId, &BasicNode)| {
            let role = if *id == node.id {
                match m.state {
                    ServerState::Leader => "leader",
                    ServerState::Candidate => "candidate",
                    ServerState::Learner => "learner",
                    _ if !voters.contains(id) => "learner",
                    _ => "follower",
                }
            } else if Some(*id) == leader {
                "leader"
            } else if voters.contains(id) {
                "follower"
            } else {
                "learner"
            };
            let matched_index = if *id == node.id && m.state == ServerState::Leader {
                m.last_log_index
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index)
            };
            NodeView {
                id: *id,
                addr: n.addr.clone(),
                role,
                matched_index,
            }
        })
        .collect();
    ClusterView {
        node_id: node.id,
        leader,
        term: m.current_term,
        members: voters.into_iter().collect(),
        // An installed snapshot commits without a save_committed call.
        commit_index: node
            .committed
            .load(Ordering::Relaxed)
            .max(node.applied.load(Ordering::Relaxed)),
        applied_index: node.applied.load(Ordering::Relaxed),
        nodes,
    }
}

/// `GET /cluster`: this node's view of the cluster.
pub async fn status(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let node = node(&state)?;
    json_ok(&view(&node))
}

#[derive(Deserialize)]
struct NewMember {
    id: Option<NodeId>,
    addr: Option<String>,
}

/// How long a membership change may take (a new node catching up included).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

fn membership_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::NoQuorum(format!("membership change failed: {e}"))
}

/// `POST /cluster/members` `{"id", "addr"}`: adds a node as a learner,
/// waits for it to catch up, then makes it a voter.
pub async fn add_member(state: Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let node = node(&state)?;
    let text = body.text()?;
    let parsed: NewMember =
        serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let (Some(id), Some(addr)) = (parsed.id, parsed.addr) else {
        return Err(ApiError::Http {
            status: StatusCode::BAD_REQUEST,
            reason: "body must be {\"id\": <node id>, \"addr\": \"host:port\"}".into(),
        });
    };
    if super::parse_peers(&format!("{id}={addr}")).is_err() {
        return Err(ApiError::Http {
            status: StatusCode::BAD_REQUEST,
            reason: format!("{addr:?} is not host:port"),
        });
    }
    let raft = node.raft.clone();
    let change = node.runtime.spawn(async move {
        raft.add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(membership_error)?;
        let mut voters: BTreeSet<NodeId> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        voters.insert(id);
        raft.change_membership(voters, false)
            .await
            .map_err(membership_error)?;
        Ok::<(), ApiError>(())
    });
    match tokio::time::timeout(MEMBERSHIP_TIMEOUT, change).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => return Err(ApiError::Internal(e.to_string())),
        Err(_) => return Err(membership_error("timed out")),
    }
    json_ok(&view(&node))
}

/// `DELETE /cluster/members/{id}`: removes a node from the voters and the
/// membership.
pub async fn remove_member(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let node = node(&state)?;
    let id: NodeId = req
        .match_info()
        .get("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::Http {
            status: StatusCode::BAD_REQUEST,
            reason: "the node id must be an unsigned integer".into(),
        })?;
    let raft = node.raft.clone();
    let known = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .any(|(n, _)| *n == id);
    if !known {
        return Err(ApiError::Http {
            status: StatusCode::NOT_FOUND,
            reason: format!("node {id} is not a member"),
        });
    }
    let change = node.runtime.spawn(async move {
        let voters: BTreeSet<NodeId> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != id)
            .collect();
        raft.change_membership(voters, false).await
    });
    match tokio::time::timeout(MEMBERSHIP_TIMEOUT, change).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::EmptyMembership(_),
            ),
        )))) => {
            return Err(ApiError::Http {
                status: StatusCode::CONFLICT,
                reason: "the last voter cannot be removed".into(),
            });
        }
        Ok(Ok(Err(e))) => return Err(membership_error(e)),
        Ok(Err(e)) => return Err(ApiError::Internal(e.to_string())),
        Err(_) => return Err(membership_error("timed out")),
    }
    json_ok(&view(&node))
}

/// Makes request ids for forwarded writes that came without one.
fn new_request_id(node: NodeId) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let nonce = SEED
        .get_or_init(RandomState::new)
        .hash_one((seq, std::process::id()));
    format!("{node}-{nonce:016x}-{seq}")
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn consistency(req: &HttpRequest) -> Result<bool, ApiError> {
    let query = req.query_string();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "consistency" {
            return match v {
                "local" => Ok(true),
                "linearizable" | "" => Ok(false),
                other => Err(ApiError::InvalidQuery {
                    name: "consistency",
                    reason: format!("{other:?} is neither \"local\" nor \"linearizable\""),
                }),
            };
        }
    }
    Ok(false)
}

async fn pass(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    request_id: Option<String>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    REQUEST_ID
        .scope(request_id, next.call(req))
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

fn refuse(req: ServiceRequest, e: ApiError) -> Result<ServiceResponse<BoxBody>, Error> {
    Ok(req.into_response(e.error_response()))
}

/// The cluster gate (see the module docs).
pub async fn gate(
    node: Arc<ClusterNode>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let path = req.path();
    let data = path == "/kv" || path.starts_with("/kv/") || path == "/store";
    let members = path == "/cluster/members" || path.starts_with("/cluster/members/");
    if !data && !members {
        return pass(req, next, None).await;
    }
    let read = data && (req.method() == Method::GET || req.method() == Method::HEAD);
    let local = match consistency(req.request()) {
        Ok(local) => local,
        Err(e) => return refuse(req, e),
    };
    if read && local {
        return pass(req, next, None).await;
    }
    let hops: u32 = header_str(req.request(), HOPS_HEADER)
        .and_then(|h| h.parse().ok())
        .unwrap_or(0);
    let given_id = header_str(req.request(), REQUEST_ID_HEADER)
        .or_else(|| header_str(req.request(), "x-request-id"))
        .filter(|id| !id.is_empty() && id.len() <= 200)
        .map(str::to_string);
    let leader = match node.leader() {
        Some(l) => Some(l),
        None => node.await_leader().await,
    };
    let Some(mut leader) = leader else {
        return refuse(
            req,
            ApiError::NoQuorum(format!(
                "no leader elected within {:?}",
                node.quorum_timeout
            )),
        );
    };
    if leader == node.id {
        if !read {
            return pass(req, next, given_id).await;
        }
        match node.read_barrier().await {
            Ok(()) => return pass(req, next, None).await,
            Err(Some(other)) => leader = other,
            Err(None) => {
                return refuse(
                    req,
                    ApiError::NoQuorum(format!(
                        "leadership not confirmed by a majority within {:?}",
                        node.quorum_timeout
                    )),
                );
            }
        }
    }
    if hops >= MAX_HOPS {
        return refuse(
            req,
            ApiError::NoQuorum("the leader changed while the request was forwarded".into()),
        );
    }
    let id = given_id.unwrap_or_else(|| new_request_id(node.id));
    let (http, payload) = req.into_parts();
    let res = match relay(&node, &http, payload, leader, &id, hops).await {
        Ok(Relayed::Answer(res)) => res,
        Ok(Relayed::Here(body)) => {
            // This node became the leader meanwhile: serve the request here.
            let req = ServiceRequest::from_parts(http, Payload::from(body));
            if read {
                if let Err(e) = node.read_barrier().await {
                    let e = ApiError::NoQuorum(format!(
                        "leadership not confirmed by a majority within {:?}{}",
                        node.quorum_timeout,
                        e.map_or(String::new(), |l| format!(" (leader now {l})"))
                    ));
                    return refuse(req, e);
                }
                return pass(req, next, None).await;
            }
            return pass(req, next, Some(id)).await;
        }
        Err(e) => e.error_response(),
    };
    Ok(ServiceResponse::new(http, res))
}

/// What [`relay`] ended with.
enum Relayed {
    /// The leader's answer, to relay.
    Answer(HttpResponse),
    /// This node is the leader now: the body read, to serve here.
    Here(actix_web::web::Bytes),
}

/// Reads the body, then forwards it to `leader`; when the leader cannot be
/// reached (it died, a new one is being elected) waits for another leader and
/// tries it, until the quorum timeout. The request id makes a retry of a
/// write that did reach the first leader harmless.
async fn relay(
    node: &ClusterNode,
    http: &HttpRequest,
    payload: Payload,
    mut leader: NodeId,
    id: &str,
    hops: u32,
) -> Result<Relayed, ApiError> {
    let state = http
        .app_data::<Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("no server state".into()))?;
    let declared = header_str(http, "content-length").and_then(|n| n.parse().ok());
    if declared.is_some_and(|n: usize| n > node.max_body_bytes) {
        return Err(ApiError::BodyTooLarge {
            limit: node.max_body_bytes,
        });
    }
    let (body, _held) = state
        .intake
        .read(payload, node.max_body_bytes, declared)
        .await?;
    let deadline = tokio::time::Instant::now() + node.quorum_timeout;
    loop {
        match forward(node, http, body.clone(), leader, id, hops).await {
            Err(Unreached(e)) => {
                // Wait for a leader other than the one that failed.
                let mut rx = node.raft.metrics();
                let next = tokio::time::timeout_at(
                    deadline,
                    rx.wait_for(|m| m.current_leader.is_some_and(|l| l != leader)),
                )
                .await;
                match next {
                    Ok(Ok(m)) => match m.current_leader {
                        Some(l) if l == node.id => return Ok(Relayed::Here(body)),
                        Some(l) => leader = l,
                        None => return Err(ApiError::NoQuorum(e)),
                    },
                    _ => return Err(ApiError::NoQuorum(e)),
                }
            }
            Ok(res) => return Ok(Relayed::Answer(res)),
        }
    }
}

/// The leader could not be reached (nothing was sent to it, or no answer came).
struct Unreached(String);

/// Headers not relayed: they describe one connection, not the message.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "date" | "upgrade"
    )
}

async fn forward(
    node: &ClusterNode,
    http: &HttpRequest,
    body: actix_web::web::Bytes,
    leader: NodeId,
    id: &str,
    hops: u32,
) -> Result<HttpResponse, Unreached> {
    let addr = node
        .addr_of(leader)
        .ok_or_else(|| Unreached(format!("leader {leader} has no known address")))?;
    let target = http
        .uri()
        .path_and_query()
        .map_or_else(|| http.path().to_string(), |pq| pq.as_str().to_string());
    let method = reqwest::Method::from_bytes(http.method().as_str().as_bytes())
        .map_err(|e| Unreached(e.to_string()))?;
    let mut builder = node
        .client
        .request(method, format!("http://{addr}{target}"))
        .timeout(node.quorum_timeout + Duration::from_secs(1))
        .header(REQUEST_ID_HEADER, id)
        .header(HOPS_HEADER, (hops + 1).to_string())
        .body(body.to_vec());
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = http.headers().get(&name) {
            builder = builder.header(name.as_str(), v.as_bytes());
        }
    }
    ClusterNode::count(&node.counters.forwarded);
    let sent = node
        .runtime
        .spawn(async move {
            let res = builder.send().await?;
            let status = res.status().as_u16();
            let headers: Vec<(String, Vec<u8>)> = res
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        })
        .await
        .map_err(|e| Unreached(e.to_string()))?;
    let (status, headers, body) = sent.map_err(|e| {
        Unreached(format!(
            "leader {leader} at {addr} could not be reached: {e}"
        ))
    })?;
    let status = StatusCode::from_u16(status).map_err(|e| Unreached(e.to_string()))?;
    let mut res = HttpResponse::build(status);
    for (name, value) in headers {
        if hop_by_hop(&name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_bytes(&value),
        ) {
            res.append_header((n, v));
        }
    }
    Ok(res.body(body.to_vec()))
}
