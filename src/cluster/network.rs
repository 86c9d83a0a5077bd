//! openraft's network over HTTP: each RPC is a POST of its JSON to the
//! peer's `/raft/{append,vote,snapshot}` (the peer's own HTTP port, behind
//! the same bearer token as the API), answered with the JSON of
//! `Result<response, RaftError>`.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{NodeId, TypeConfig};

/// Longest an RPC may wait for its TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes a [`Conn`] per peer; all share one pooled HTTP client.
#[derive(Debug, Clone)]
pub struct Network {
    client: reqwest::Client,
    token: Option<String>,
}

impl Network {
    /// A network sending with `client`, authenticating with `token`.
    pub fn new(client: reqwest::Client, token: Option<String>) -> Network {
        Network { client, token }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Conn {
        Conn {
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
            token: self.token.clone(),
        }
    }
}

/// The RPC client of one peer.
#[derive(Debug)]
pub struct Conn {
    target: NodeId,
    addr: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Conn {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut builder = self
            .client
            .post(format!("http://{}/raft/{path}", self.addr))
            .header("content-type", "application/json")
            .timeout(ttl)
            .body(body);
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        let res = builder.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let msg = format!(
                "peer {} answered {status}: {}",
                self.target,
                String::from_utf8_lossy(&bytes)
            );
            return Err(RPCError::Network(NetworkError::new(&AnyError::error(msg))));
        }
        let answer: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
