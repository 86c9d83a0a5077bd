//! A cluster of real `kvstore` processes on 127.0.0.1: started with free
//! ports and their own data dirs, killed (SIGKILL), restarted on their data
//! dirs, paused (SIGSTOP) and resumed (SIGCONT) by PID, inspected through
//! `GET /cluster`, and dumped whole through the paged local listing. Every
//! process is killed when the cluster is dropped, failed test or not.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{BIN, Resp, free_port, try_request_within};

/// How long a harness request waits for an answer: beyond any bound the
/// cluster promises (quorum timeout, forwarding), so a hang is a failure.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(15);

/// The quorum timeout the harness gives every node (`--quorum-timeout`):
/// shorter than the 5 s default so outages cost the tests less time.
pub const QUORUM_TIMEOUT: Duration = Duration::from_secs(2);

/// Leader elections, restarts and catch-up get this long: far beyond what
/// they take, so only a real failure trips it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One member process.
pub struct Node {
    /// Its Raft node id.
    pub id: u64,
    /// Its HTTP port (also its Raft address).
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    peers: String,
    /// `--join`: waits to be added instead of forming a cluster.
    join: bool,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// Whether the process is running (paused counts as running).
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> libc::pid_t {
        let child = self.child.as_ref().expect("node is not running");
        libc::pid_t::try_from(child.id()).unwrap()
    }
}

/// The processes of one test; ids are 1..=n in start order.
pub struct Cluster {
    /// The nodes, by ascending id.
    pub nodes: Vec<Node>,
    args: Vec<String>,
    plain: bool,
    _root: tempfile::TempDir,
}

/// `id=127.0.0.1:port,...`.
fn peers_of(members: &[(u64, u16)]) -> String {
    members
        .iter()
        .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Cluster {
    /// Starts `n` nodes that form a cluster by themselves (empty data dirs,
    /// the same `--peers`), with `args` added to each command line, and
    /// waits for a leader every node agrees on.
    pub fn start(n: usize, args: &[&str]) -> Cluster {
        let mut c = Cluster::empty(args, false);
        let members: Vec<(u64, u16)> = (1..=n as u64).map(|id| (id, free_port())).collect();
        let peers = peers_of(&members);
        for (id, port) in members {
            c.push_node(id, port, &peers);
        }
        for i in 0..c.nodes.len() {
            c.spawn(i);
        }
        for i in 0..c.nodes.len() {
            c.wait_healthy(c.nodes[i].id);
        }
        c.wait_leader();
        c
    }

    /// One plain single-node server (no cluster flags) as node 1: the
    /// harness's helpers (requests, dumps, kill/restart) validated without
    /// a cluster.
    pub fn single(args: &[&str]) -> Cluster {
        let mut c = Cluster::empty(args, true);
        c.push_node(1, free_port(), "");
        c.spawn(0);
        c.wait_healthy(1);
        c
    }

    fn empty(args: &[&str], plain: bool) -> Cluster {
        Cluster {
            nodes: Vec::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            plain,
            _root: tempfile::tempdir().unwrap(),
        }
    }

    fn push_node(&mut self, id: u64, port: u16, peers: &str) {
        let root = self._root.path();
        self.nodes.push(Node {
            id,
            port,
            data: root.join(format!("node{id}")),
            log: root.join(format!("node{id}.log")),
            peers: peers.to_string(),
            join: false,
            child: None,
            paused: false,
        });
    }

    fn index(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[self.index(id)]
    }

    /// The HTTP port of node `id`.
    pub fn port(&self, id: u64) -> u16 {
        self.node(id).port
    }

    /// Every node's id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Ids of the nodes running and not paused.
    pub fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_up() && !n.paused)
            .map(|n| n.id)
            .collect()
    }

    /// Ports of the nodes in `ids`.
    pub fn ports(&self, ids: &[u64]) -> Vec<u16> {
        ids.iter().map(|&id| self.port(id)).collect()
    }

    fn spawn(&mut self, i: usize) {
        let plain = self.plain;
        let args = self.args.clone();
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {} already running", node.id);
        // Appended, so a restarted node's log follows its earlier life.
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--port")
            .arg(node.port.to_string())
            .arg("--data-dir")
            .arg(&node.data);
        if !plain {
            cmd.arg("--node-id")
                .arg(node.id.to_string())
                .arg("--peers")
                .arg(&node.peers)
                .arg("--quorum-timeout")
                .arg(format!("{}s", QUORUM_TIMEOUT.as_secs()));
            if node.join {
                cmd.arg("--join");
            }
        }
        cmd.args(&args)
            .env_remove("PORT")
            .env_remove("DATA_DIR")
            .env_remove("KVSTORE_AUTH_TOKEN")
            .env_remove("KVSTORE_NODE_ID")
            .env_remove("KVSTORE_PEERS")
            .env_remove("KVSTORE_CONFIG")
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        node.child = Some(cmd.spawn().unwrap());
        node.paused = false;
    }

    /// What node `id` has logged so far (every life of it).
    pub fn log_text(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = self.log_text(n.id);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(25);
            out.push_str(&format!("--- node {} (port {}) ---\n", n.id, n.port));
            for l in &lines[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until node `id` answers `/health` (panics if it exits).
    pub fn wait_healthy(&mut self, id: u64) {
        let i = self.index(id);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let node = &mut self.nodes[i];
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                node.child = None;
                panic!("node {id} exited ({status}):\n{}", self.logs_tail());
            }
            if let Ok(r) = self.req_within(id, "GET", "/health", None, Duration::from_secs(2))
                && r.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {id} never became healthy:\n{}", self.logs_tail());
    }

    /// A request to node `id` that waits at most [`REQUEST_LIMIT`].
    pub fn req(
        &self,
        id: u64,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<Resp> {
        self.req_within(id, method, path, body, REQUEST_LIMIT)
    }

    /// A request to node `id` that waits at most `limit`.
    pub fn req_within(
        &self,
        id: u64,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> std::io::Result<Resp> {
        try_request_within(self.port(id), method, path, body, &[], limit)
    }

    /// A request to node `id` that must get an answer.
    pub fn must(&self, id: u64, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.req(id, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on node {id}: {e}\n{}", self.logs_tail()))
    }

    /// Node `id`'s `GET /cluster`, if it answers 200 with JSON in time.
    pub fn info(&self, id: u64) -> Option<Value> {
        let r = self
            .req_within(id, "GET", "/cluster", None, Duration::from_secs(3))
            .ok()?;
        if r.status != 200 {
            return None;
        }
        serde_json::from_str(&r.body).ok()
    }

    /// Waits until every live node names the same leader, the leader is one
    /// of them, and it calls itself leader; returns its id.
    pub fn wait_leader(&self) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            let live = self.live();
            last = live
                .iter()
                .map(|&id| (id, self.info(id)))
                .collect::<Vec<_>>();
            let leaders: Vec<Option<u64>> = last
                .iter()
                .map(|(_, i)| i.as_ref().and_then(|v| v["leader"].as_u64()))
                .collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && live.contains(l)
            {
                return *l;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no agreed leader among {:?}: {last:?}\n{}",
            self.live(),
            self.logs_tail()
        );
    }

    /// [`Cluster::wait_leader`], requiring a leader other than `old`.
    pub fn wait_new_leader(&self, old: u64) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let l = self.wait_leader();
            if l != old {
                return l;
            }
            assert!(Instant::now() < deadline, "leader is still {old}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends `sig` to node `id` by PID.
    #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
    fn signal(&self, id: u64, sig: libc::c_int) {
        let pid = self.node(id).pid();
        // SAFETY: kill(2) on our own child's PID has no memory-safety effects.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self, id: u64) {
        self.signal(id, libc::SIGKILL);
        let i = self.index(id);
        let node = &mut self.nodes[i];
        node.child.take().unwrap().wait().unwrap();
        node.paused = false;
    }

    /// Starts node `id` again on its data dir and port; waits for `/health`.
    pub fn restart(&mut self, id: u64) {
        let i = self.index(id);
        self.spawn(i);
        self.wait_healthy(id);
    }

    /// SIGSTOP: the process keeps its sockets (connections are accepted by
    /// the kernel) but answers nothing.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
        let i = self.index(id);
        self.nodes[i].paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        let i = self.index(id);
        self.nodes[i].paused = false;
    }

    /// Starts a new, empty node with the next id and `--join`, to be added
    /// with `POST /cluster/members`; its `--peers` names the current members
    /// and itself. Returns its id.
    pub fn spawn_joiner(&mut self) -> u64 {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let port = free_port();
        let mut members: Vec<(u64, u16)> = self.nodes.iter().map(|n| (n.id, n.port)).collect();
        members.push((id, port));
        self.push_node(id, port, &peers_of(&members));
        let i = self.nodes.len() - 1;
        self.nodes[i].join = true;
        self.spawn(i);
        self.wait_healthy(id);
        id
    }

    /// Waits until every node in `ids` has applied at least what the leader
    /// has committed when this is called; returns that commit index.
    pub fn wait_caught_up(&self, ids: &[u64]) -> u64 {
        let leader = self.wait_leader();
        let deadline = Instant::now() + PATIENCE;
        let commit = loop {
            if let Some(c) = self.info(leader).and_then(|v| v["commit_index"].as_u64()) {
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "leader {leader} has no commit_index"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        for &id in ids {
            loop {
                let applied = self.info(id).and_then(|v| v["applied_index"].as_u64());
                if applied.is_some_and(|a| a >= commit) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} applied {applied:?} < {commit}\n{}",
                    self.logs_tail()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        commit
    }

    /// Every live pair of node `id`'s own state (`consistency=local`), read
    /// page by page as docs/API.md describes (`limit`, `next` -> `after`).
    pub fn dump(&self, id: u64) -> BTreeMap<String, Value> {
        let mut all = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = "/kv?values=true&consistency=local&limit=1000".to_string();
            if let Some(a) = &after {
                path.push_str("&after=");
                path.push_str(&form_encode(a));
            }
            let r = self.must(id, "GET", &path, None);
            assert_eq!(r.status, 200, "{path} on node {id}: {}", r.body);
            let v = r.json();
            let pairs = v["pairs"].as_object().unwrap();
            let mut last = None;
            for (k, val) in pairs {
                if let Some(prev) = &last {
                    assert!(prev < k, "listing out of order: {prev:?} then {k:?}");
                }
                assert!(
                    all.insert(k.clone(), val.clone()).is_none(),
                    "{k:?} listed twice"
                );
                last = Some(k.clone());
            }
            match v.get("next") {
                None => return all,
                Some(n) => {
                    let n = n.as_str().unwrap().to_string();
                    assert_eq!(Some(&n), last.as_ref(), "next is not the last key");
                    after = Some(n);
                }
            }
        }
    }

    /// Waits until the dumps of every node in `ids` are identical; returns
    /// that keyspace. (Applied indexes can match while a dump races an
    /// apply, so the dumps themselves are compared until they agree.)
    pub fn wait_identical(&self, ids: &[u64]) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.wait_caught_up(ids);
            let dumps: Vec<_> = ids.iter().map(|&id| self.dump(id)).collect();
            if dumps.windows(2).all(|w| w[0] == w[1]) {
                return dumps.into_iter().next().unwrap_or_default();
            }
            if Instant::now() > deadline {
                let sizes: Vec<usize> = dumps.iter().map(BTreeMap::len).collect();
                let first = &dumps[0];
                let diff: Vec<String> = dumps[1..]
                    .iter()
                    .enumerate()
                    .flat_map(|(j, d)| {
                        first
                            .iter()
                            .filter(|(k, v)| d.get(*k) != Some(v))
                            .map(|(k, v)| {
                                format!("{k}: {v} vs node {}: {:?}", ids[j + 1], d.get(k))
                            })
                            .chain(
                                d.keys()
                                    .filter(|k| !first.contains_key(*k))
                                    .map(|k| format!("{k}: only on node {}", ids[j + 1])),
                            )
                            .collect::<Vec<_>>()
                    })
                    .take(20)
                    .collect();
                panic!(
                    "nodes {ids:?} never agreed: sizes {sizes:?}; first differences:\n{}",
                    diff.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// Form-encodes a key for a query string (`+` and every non-alphanumeric
/// byte escaped, so it decodes back to itself).
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                // SIGKILL ends a stopped process too.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
