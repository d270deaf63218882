//! The private Redis Cluster the shard-loss tests stand on ([`PrivateCluster`]): it forms, it
//! answers its topology, and a `kill -9`'d master's replica takes over with the master's writes.

use crate::common::cluster::PrivateCluster;
use std::time::Duration;

fn connect(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// Nothing acknowledged by a replica is lost when its master is killed: the replica is promoted,
/// serves the key's slot and holds the value, and the cluster is whole again.
#[test]
fn a_killed_masters_replica_takes_over_with_its_acknowledged_writes() {
    let mut cluster = PrivateCluster::start();
    assert_eq!(cluster.ports().len(), 6);
    assert_eq!(cluster.seeds().split(',').count(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");

    let key = "sf:cluster-infra:{shard}";
    let master = cluster.master_of(key);
    assert!(masters.contains(&master), "{master} not in {masters:?}");
    let replica = cluster.replica_of(master);
    let mut c = connect(master);
    redis::cmd("SET")
        .arg(key)
        .arg("42")
        .query::<()>(&mut c)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(1_000).query(&mut c).unwrap();
    assert_eq!(acked, 1, "the replica acknowledged the SET before the kill");

    cluster.kill9(master);
    let promoted = cluster.wait_for_promotion(master, Duration::from_secs(20));
    assert_eq!(
        promoted, replica,
        "the killed master's own replica took over"
    );
    assert_eq!(cluster.master_of(key), promoted);
    let mut c = connect(promoted);
    let value: Option<String> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
    assert_eq!(value.as_deref(), Some("42"));
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
    assert!(info.contains("cluster_state:ok"), "{info}");
    let now: Vec<u16> = cluster.masters();
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(!now.contains(&master) && now.contains(&promoted), "{now:?}");

    // One shard loses its data: the key goes with it.
    cluster.flush_master(promoted);
    let value: Option<String> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
    assert_eq!(value, None);
}
