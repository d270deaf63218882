//! A private Redis Cluster for tests that lose a shard: 3 masters and 3 replicas, real
//! `redis-server` processes on free loopback ports, created with `redis-cli --cluster create`.
//!
//! It owns the processes and their folders, answers what the cluster itself says about its
//! topology (asked from a live node, never remembered), and injects faults (`kill -9`, a flushed
//! shard). Every call is synchronous and bounded, so tokio tests may call it directly. Dropping
//! it kills every node and removes their folders, also while a failing test unwinds.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const MASTERS: usize = 3;
const NODES: usize = 2 * MASTERS;
const SLOTS: u32 = 16_384;
/// How long a node may be unreachable before it is failed over; short, so tests fail over fast.
const NODE_TIMEOUT_MS: &str = "1000";
/// Bound on each command the harness sends to a node.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A private Redis Cluster; see the module docs.
pub struct PrivateCluster {
    /// Holds one folder per node; removed on drop.
    dir: PathBuf,
    nodes: Vec<Node>,
    /// The slot ranges a killed node served when it was killed (none for a replica).
    former_slots: HashMap<u16, Vec<(u16, u16)>>,
}

struct Node {
    port: u16,
    bus_port: u16,
    /// `None` once killed.
    child: Option<Child>,
}

impl PrivateCluster {
    /// Starts 6 nodes, creates the cluster and waits until every node says `cluster_state:ok`
    /// with every slot covered and every replica's link to its master is up (within 30 s).
    pub fn start() -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        // The cluster tests start at once: while one picks free ports and its nodes are not
        // listening on them yet, another could be given the same ports. Held until every node
        // answers.
        static PICKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let picking = PICKING.lock().unwrap_or_else(|e| e.into_inner());
        let ports = port_pairs(NODES);
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sf-cluster-{}-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed),
            ports[0].0,
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // From here on a panic drops the cluster, which kills what was started.
        let mut cluster = Self {
            dir,
            nodes: Vec::with_capacity(NODES),
            former_slots: HashMap::new(),
        };
        for &(port, bus_port) in &ports {
            cluster.spawn_node(port, bus_port);
        }
        for i in 0..NODES {
            cluster.wait_answering(i, deadline);
        }
        drop(picking);
        cluster.create(deadline);
        wait_until(deadline, || cluster.formed());
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node (dead ones too), comma-separated.
    pub fn seeds(&self) -> String {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ports of all six nodes, dead ones too.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The live masters serving slots, as a live node sees them now (ascending).
    pub fn masters(&self) -> Vec<u16> {
        let mut masters: Vec<u16> = self
            .topology()
            .iter()
            .filter(|n| n.is_master() && !n.slots.is_empty())
            .filter(|n| !n.failing() && self.is_alive(n.port))
            .map(|n| n.port)
            .collect();
        masters.sort_unstable();
        masters
    }

    /// The live master now serving the slot of `key`.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = self.ask(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key));
        self.topology()
            .iter()
            .find(|n| {
                n.is_master()
                    && !n.failing()
                    && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
            })
            .filter(|n| self.is_alive(n.port))
            .map(|n| n.port)
            .unwrap_or_else(|| {
                panic!("no live master serves slot {slot} of {key:?} (a failover under way?)")
            })
    }

    /// A live replica of `master`.
    pub fn replica_of(&self, master: u16) -> u16 {
        let nodes = self.topology();
        let id = &nodes
            .iter()
            .find(|n| n.port == master)
            .unwrap_or_else(|| panic!("{master} is not a node of the cluster"))
            .id;
        nodes
            .iter()
            .find(|n| n.master_id.as_ref() == Some(id) && !n.failing() && self.is_alive(n.port))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("{master} has no live replica"))
    }

    /// `kill -9` of one node; the other calls skip it from now on.
    pub fn kill9(&mut self, port: u16) {
        // Which slots it served is asked before it dies, while the cluster still says so.
        let slots = self
            .topology_from(|p| p != port)
            .into_iter()
            .find(|n| n.port == port)
            .map(|n| n.slots)
            .unwrap_or_default();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of the cluster"));
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {port} was killed already"));
        let _ = child.kill();
        let _ = child.wait();
        self.former_slots.insert(port, slots);
    }

    /// Waits until every live node says `cluster_state:ok` and agrees that one other live node,
    /// a master by its own account, serves the slots `dead_master` served when it was killed;
    /// answers that node.
    pub fn wait_for_promotion(&self, dead_master: u16, within: Duration) -> u16 {
        let slots = self
            .former_slots
            .get(&dead_master)
            .unwrap_or_else(|| panic!("{dead_master} was not killed with kill9"));
        assert!(
            !slots.is_empty(),
            "{dead_master} served no slots when killed"
        );
        let deadline = Instant::now() + within;
        poll(deadline, || self.promoted(slots)).unwrap_or_else(|last| {
            panic!(
                "no replica took over the slots of killed master {dead_master} within \
                 {within:?}: {last}"
            )
        })
    }

    /// `FLUSHALL` on a master: its shard loses its data. Returns once its connected replicas
    /// acknowledged the flush (within 5 s).
    pub fn flush_master(&self, port: u16) {
        assert!(self.is_alive(port), "node {port} was killed");
        let result = connect(port).and_then(|mut c| {
            redis::cmd("FLUSHALL").query::<()>(&mut c)?;
            let info: String = redis::cmd("INFO").arg("replication").query(&mut c)?;
            let replicas: i64 = field(&info, "connected_slaves").map_or(0, |v| v.parse().unwrap());
            c.set_read_timeout(Some(Duration::from_secs(6)))?;
            let acked: i64 = redis::cmd("WAIT").arg(replicas).arg(5_000).query(&mut c)?;
            assert!(
                acked >= replicas,
                "{acked} of {replicas} replicas of {port} acknowledged FLUSHALL"
            );
            Ok(())
        });
        if let Err(e) = result {
            panic!("FLUSHALL on {port}: {e}");
        }
    }

    // ---- starting ----

    fn spawn_node(&mut self, port: u16, bus_port: u16) {
        let child = self.node_process(port, bus_port);
        self.nodes.push(Node {
            port,
            bus_port,
            child: Some(child),
        });
    }

    /// Waits until node `i` answers `PING`. A free port can be taken between being picked and the
    /// node listening on it (an outgoing connection's local port comes from the same range): a
    /// node that exits before it answers is started again on other ports, a few times.
    fn wait_answering(&mut self, i: usize, deadline: Instant) {
        let mut restarts = 0;
        wait_until(deadline, || {
            let node = &mut self.nodes[i];
            let why = match ping(node.port) {
                Ok(()) => return Ok(()),
                Err(e) => format!("node {} does not answer: {e}", node.port),
            };
            let exited = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let Some(status) = exited else {
                return Err(why);
            };
            let log =
                std::fs::read_to_string(self.dir.join(node.port.to_string()).join("redis.log"))
                    .unwrap_or_default();
            restarts += 1;
            assert!(
                restarts <= 5,
                "node {} exited ({status}) at each of 5 starts; its log:\n{log}",
                node.port
            );
            let (port, bus_port) = port_pairs(1)[0];
            let child = self.node_process(port, bus_port);
            self.nodes[i] = Node {
                port,
                bus_port,
                child: Some(child),
            };
            Err(why)
        });
    }

    /// Starts a node killed with [`PrivateCluster::kill9`] again, on its ports and with its
    /// cluster config: it rejoins the cluster, as a replica of the node that took over its slots.
    /// Returns once it answers and its link to its master is up (within 30 s).
    pub fn restart(&mut self, port: u16) {
        let bus_port = self
            .nodes
            .iter()
            .find(|n| n.port == port && n.child.is_none())
            .unwrap_or_else(|| panic!("{port} is not a killed node of the cluster"))
            .bus_port;
        let child = self.node_process(port, bus_port);
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("node")
            .child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        wait_until(deadline, || {
            let mut c = connect(port).map_err(|e| format!("node {port} does not answer: {e}"))?;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut c)
                .map_err(|e| e.to_string())?;
            if info.contains("master_link_status:up") {
                Ok(())
            } else {
                Err(format!("node {port} has not synced with its master yet"))
            }
        });
    }

    fn node_process(&self, port: u16, bus_port: u16) -> Child {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--cluster-port",
                &bus_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &path(""),
                "--logfile",
                &path("redis.log"),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &path("nodes.conf"),
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
                // A replica may always be promoted, however long ago it last heard its master.
                "--cluster-replica-validity-factor",
                "0",
                // A replica's first full sync starts at once, not after the default 5 s.
                "--repl-diskless-sync-delay",
                "0",
                "--appendonly",
                "no",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (set REDIS_SERVER_BIN)")
    }

    /// `redis-cli --cluster create`, killed if it outlives the deadline (it waits for the nodes
    /// to agree with no bound of its own).
    fn create(&self, deadline: Instant) {
        let out = self.dir.join("create.log");
        let log = std::fs::File::create(&out).unwrap();
        let bin = std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".into());
        let mut child = Command::new(bin)
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-cli starts (set REDIS_CLI_BIN)");
        let log = || std::fs::read_to_string(&out).unwrap_or_default();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "redis-cli --cluster create failed ({status}):\n{}",
                    log()
                );
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-cli --cluster create did not finish within 30 s:\n{}",
                    log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the cluster is ready for a test; else what is missing.
    fn formed(&self) -> Result<(), String> {
        let mut roles = Vec::new();
        for node in &self.nodes {
            let port = node.port;
            let mut c = connect(port).map_err(|e| format!("node {port}: {e}"))?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut c)
                .map_err(|e| format!("CLUSTER INFO on {port}: {e}"))?;
            for (name, want) in [
                ("cluster_state", "ok".to_owned()),
                ("cluster_slots_ok", SLOTS.to_string()),
                ("cluster_known_nodes", NODES.to_string()),
            ] {
                let got = field(&info, name);
                if got != Some(want.as_str()) {
                    return Err(format!("node {port} says {name}:{got:?}"));
                }
            }
            let repl: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut c)
                .map_err(|e| format!("INFO replication on {port}: {e}"))?;
            let role = field(&repl, "role").unwrap_or_default().to_owned();
            if role == "slave" && field(&repl, "master_link_status") != Some("up") {
                return Err(format!("replica {port}'s link to its master is not up"));
            }
            roles.push(role);
            // Roles travel by gossip: until every node's view says what the nodes themselves do,
            // the topology calls would answer from a stale one.
            let nodes = cluster_nodes(port).map_err(|e| format!("CLUSTER NODES on {port}: {e}"))?;
            shaped(&nodes).map_err(|why| format!("node {port} sees {why}"))?;
        }
        let masters = roles.iter().filter(|r| *r == "master").count();
        if masters != MASTERS {
            return Err(format!("{masters} masters, roles {roles:?}"));
        }
        Ok(())
    }

    // ---- asking the cluster ----

    /// Stops a node's process (`SIGSTOP`): it neither answers nor acknowledges replication, as
    /// a replica that hangs; [`PrivateCluster::resume`] lets it go on.
    pub fn pause(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// Lets a node [`PrivateCluster::pause`]d go on (`SIGCONT`).
    pub fn resume(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    /// Cuts `replica` off its master's replication stream and keeps it off: its link is closed
    /// on the master, and its reconnections fail their handshake (it now sends a password the
    /// master does not have). The cluster bus is untouched, so it can still be promoted; writes
    /// to the master from now on never reach it. Returns once the replica says its link is down.
    /// [`PrivateCluster::let_replicate`] undoes it.
    pub fn cut_replication(&self, replica: u16) {
        let master = self.master_port_of(replica);
        let result = connect(replica)
            .and_then(|mut c| {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("masterauth")
                    .arg("cut-off")
                    .query::<()>(&mut c)
            })
            .and_then(|_| connect(master))
            .and_then(|mut c| {
                redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("replica")
                    .query::<i64>(&mut c)
            });
        if let Err(e) = result {
            panic!("cutting replica {replica} off {master}: {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        poll(deadline, || {
            let info: String = connect(replica)
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                .map_err(|e| e.to_string())?;
            match field(&info, "master_link_status") {
                Some("down") => Ok(()),
                other => Err(format!(
                    "replica {replica} says master_link_status:{other:?}"
                )),
            }
        })
        .unwrap_or_else(|why| panic!("{why}"));
    }

    /// Undoes [`PrivateCluster::cut_replication`]: the node may sync with a master again.
    pub fn let_replicate(&self, node: u16) {
        let result = connect(node).and_then(|mut c| {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("masterauth")
                .arg("")
                .query::<()>(&mut c)
        });
        if let Err(e) = result {
            panic!("CONFIG SET masterauth on {node}: {e}");
        }
    }

    /// The port of the master `replica` replicates, as the cluster says now.
    fn master_port_of(&self, replica: u16) -> u16 {
        let nodes = self.topology();
        let master_id = nodes
            .iter()
            .find(|n| n.port == replica)
            .and_then(|n| n.master_id.clone())
            .unwrap_or_else(|| panic!("{replica} is not a replica"));
        nodes
            .iter()
            .find(|n| n.id == master_id)
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("the master of {replica} is not a node of the cluster"))
    }

    fn signal(&self, port: u16, signal: &str) {
        let pid = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .and_then(|n| n.child.as_ref())
            .unwrap_or_else(|| panic!("node {port} is not running"))
            .id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn is_alive(&self, port: u16) -> bool {
        self.nodes
            .iter()
            .any(|n| n.port == port && n.child.is_some())
    }

    /// `cmd` on the first live node that answers.
    fn ask<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match connect(port).and_then(|mut c| cmd.query(&mut c)) {
                Ok(v) => return v,
                Err(e) => errors.push(format!("{port}: {e}")),
            }
        }
        panic!("no live node answered: {errors:?}")
    }

    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    /// `CLUSTER NODES` of a live node.
    fn topology(&self) -> Vec<NodeLine> {
        self.topology_from(|_| true)
    }

    /// `CLUSTER NODES` of the first live node in `which` that answers.
    fn topology_from(&self, which: impl Fn(u16) -> bool) -> Vec<NodeLine> {
        let mut errors = Vec::new();
        for port in self.live_ports().filter(|&p| which(p)) {
            match cluster_nodes(port) {
                Ok(nodes) => return nodes,
                Err(e) => errors.push(format!("{port}: {e}")),
            }
        }
        panic!("no live node answered CLUSTER NODES: {errors:?}")
    }

    /// The node every live node says serves all of `slots`, when they agree, it is another live
    /// node, it calls itself a master, and every live node says `cluster_state:ok`.
    fn promoted(&self, slots: &[(u16, u16)]) -> Result<u16, String> {
        let mut owners = BTreeSet::new();
        for port in self.live_ports() {
            let mut c = connect(port).map_err(|e| format!("node {port}: {e}"))?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut c)
                .map_err(|e| format!("CLUSTER INFO on {port}: {e}"))?;
            if field(&info, "cluster_state") != Some("ok") {
                return Err(format!("node {port} is not cluster_state:ok"));
            }
            let nodes = cluster_nodes(port).map_err(|e| format!("CLUSTER NODES on {port}: {e}"))?;
            for &(a, b) in slots {
                let owner = nodes
                    .iter()
                    .find(|n| n.is_master() && n.slots.iter().any(|&(x, y)| x <= a && b <= y))
                    .ok_or_else(|| format!("node {port} sees no single owner of slots {a}-{b}"))?;
                owners.insert(owner.port);
            }
        }
        let owner = match owners.iter().collect::<Vec<_>>()[..] {
            [&owner] => owner,
            _ => return Err(format!("the live nodes name owners {owners:?}")),
        };
        if !self.is_alive(owner) {
            return Err(format!("the slots are still assigned to dead node {owner}"));
        }
        let repl: String = connect(owner)
            .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
            .map_err(|e| format!("INFO replication on {owner}: {e}"))?;
        match field(&repl, "role") {
            Some("master") => Ok(owner),
            role => Err(format!("owner {owner} says role:{role:?}")),
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` pairs of free loopback ports (client, cluster bus), all distinct: the listeners are held
/// until every port is chosen. The bus port is given explicitly because client port + 10000 (the
/// default) may be taken or past 65535.
fn port_pairs(n: usize) -> Vec<(u16, u16)> {
    let listeners: Vec<_> = (0..2 * n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    ports.chunks(2).map(|p| (p[0], p[1])).collect()
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    master_id: Option<String>,
    /// Inclusive ranges; slots being imported or migrated (`[...]`) are left out.
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    /// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (addr, _bus) = fields.get(1)?.split_once('@')?;
        let slots = fields
            .get(8..)
            .unwrap_or_default()
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|x| (x, x)),
            })
            .collect();
        Some(Self {
            id: fields[0].to_owned(),
            port: addr.rsplit_once(':')?.1.parse().ok()?,
            flags: fields.get(2)?.split(',').map(str::to_owned).collect(),
            master_id: Some(*fields.get(3)?)
                .filter(|m| *m != "-")
                .map(str::to_owned),
            slots,
        })
    }

    fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    /// Failed by the cluster's verdict, unreachable or not yet joined. A mere suspicion
    /// (`fail?`, one node's missed pongs) does not count: under load it comes and goes.
    fn failing(&self) -> bool {
        self.flags
            .iter()
            .any(|f| matches!(f.as_str(), "fail" | "noaddr" | "handshake"))
    }
}

/// Whether one node's view is a formed cluster: every node up, [`MASTERS`] masters serving slots,
/// and each with exactly one replica.
fn shaped(nodes: &[NodeLine]) -> Result<(), String> {
    if let Some(n) = nodes
        .iter()
        .find(|n| n.failing() || n.flags.iter().any(|f| f == "fail?"))
    {
        return Err(format!("{} flagged {:?}", n.port, n.flags));
    }
    let masters: Vec<&NodeLine> = nodes
        .iter()
        .filter(|n| n.is_master() && !n.slots.is_empty())
        .collect();
    if nodes.len() != NODES || masters.len() != MASTERS {
        return Err(format!(
            "{} masters serving slots of {} nodes",
            masters.len(),
            nodes.len()
        ));
    }
    for m in masters {
        let replicas = nodes
            .iter()
            .filter(|n| n.master_id.as_ref() == Some(&m.id) && n.flags.iter().any(|f| f == "slave"))
            .count();
        if replicas != 1 {
            return Err(format!("{replicas} replicas of master {}", m.port));
        }
    }
    Ok(())
}

fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_connection_with_timeout(IO_TIMEOUT)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(c)
}

fn ping(port: u16) -> redis::RedisResult<()> {
    redis::cmd("PING").query::<String>(&mut connect(port)?)?;
    Ok(())
}

fn cluster_nodes(port: u16) -> redis::RedisResult<Vec<NodeLine>> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut connect(port)?)?;
    Ok(text.lines().filter_map(NodeLine::parse).collect())
}

/// `name:value` of an `INFO`-style answer.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Retries `check` every 50 ms until it passes or the deadline is past; answers its last answer.
fn poll<T>(deadline: Instant, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(why) if Instant::now() >= deadline => return Err(why),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// [`poll`] for [`PrivateCluster::start`].
fn wait_until(deadline: Instant, check: impl FnMut() -> Result<(), String>) {
    if let Err(why) = poll(deadline, check) {
        panic!("the private cluster was not ready within 30 s: {why}");
    }
}
