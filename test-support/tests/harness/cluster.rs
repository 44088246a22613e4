use redis::Commands;
use test_support::{NodeRole, RedisCluster};

use crate::timed;

fn slot_count(cluster: &mut RedisCluster, i: usize) -> u32 {
    match cluster.nodes().into_iter().find(|n| n.index == i).map(|n| n.role) {
        Some(NodeRole::Primary { slots }) => {
            slots.iter().map(|&(a, b)| u32::from(b) - u32::from(a) + 1).sum()
        }
        role => panic!("node {i} is not a primary: {role:?}"),
    }
}

#[test]
fn a_cluster_starts_with_three_primaries_each_replicated_and_serves_every_slot() {
    let mut cluster = timed("cluster start-up", RedisCluster::start);
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{nodes:?}");
    let served: u32 = primaries.iter().map(|&p| slot_count(&mut cluster, p)).sum();
    assert_eq!(served, 16384);
    for &p in &primaries {
        assert!(cluster.replica_of(p).is_some(), "primary {p} has no replica: {nodes:?}");
    }
    for i in 0..cluster.len() {
        let info: String =
            redis::cmd("CLUSTER").arg("INFO").query(&mut cluster.connection(i)).expect("info");
        assert_eq!(test_support::info_field(&info, "cluster_state"), Some("ok"), "node {i}");
    }
    let urls = cluster.urls();
    assert_eq!(cluster.urls_csv().split(',').collect::<Vec<_>>(), urls);
    assert!(urls.iter().all(|u| u.starts_with("redis://127.0.0.1:")), "{urls:?}");
    assert!(urls.iter().all(|u| crate::url_port(u) != 6379));
    assert_eq!(cluster.env(), vec![("AUTH_REDIS_CLUSTER_URLS".to_owned(), cluster.urls_csv())]);

    // Keys spread over all three primaries are written and read through redirects.
    let mut conn = cluster.cluster_connection();
    for k in 0..200 {
        let _: () = conn.set(format!("key:{k}"), k).expect("SET through the cluster");
    }
    for k in 0..200 {
        let v: u32 = conn.get(format!("key:{k}")).expect("GET through the cluster");
        assert_eq!(v, k);
    }
    let mut owners: Vec<usize> =
        (0..200).map(|k| cluster.primary_for_key(&format!("key:{k}"))).collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners, primaries);
}

#[test]
fn a_key_stays_readable_after_a_manual_failover_and_after_its_primary_is_killed() {
    let mut cluster = RedisCluster::start();
    let mut conn = cluster.cluster_connection();
    let _: () = conn.set("session:{abc}", "v1").expect("SET");
    let first = cluster.primary_for_key("session:{abc}");
    let replica = cluster.replica_of(first).expect("a replica");

    let promoted = timed("cluster manual failover", || cluster.failover(first));
    assert_eq!(promoted, replica);
    assert_eq!(cluster.primary_for_key("session:{abc}"), promoted);
    let roles = cluster.nodes();
    assert_eq!(roles[first].role, NodeRole::Replica { of: promoted });
    let v: String = cluster.cluster_connection().get("session:{abc}").expect("GET after failover");
    assert_eq!(v, "v1");

    // Acknowledged by the replica before the kill, so the replica that takes over has it.
    let _: () = conn.set("session:{abc}", "v2").expect("SET");
    let acked: u32 =
        redis::cmd("WAIT").arg(1).arg(1000).query(&mut cluster.connection(promoted)).expect("WAIT");
    assert_eq!(acked, 1);
    let successor = timed("cluster kill_primary until replaced", || cluster.kill_primary(promoted));
    assert_eq!(successor, first);
    assert!(!cluster.is_running(promoted));
    let v: String = cluster.cluster_connection().get("session:{abc}").expect("GET after kill");
    assert_eq!(v, "v2");

    timed("cluster restart_node", || cluster.restart_node(promoted));
    let roles = cluster.nodes();
    assert_eq!(roles[promoted].role, NodeRole::Replica { of: successor }, "{roles:?}");
    assert!(roles.iter().all(|n| n.running));
    let v: String = redis::cmd("GET")
        .arg("session:{abc}")
        .query(&mut cluster.connection(successor))
        .expect("GET on the primary");
    assert_eq!(v, "v2");
}

#[test]
fn resharding_under_reads_moves_slots_and_every_key_stays_readable() {
    let mut cluster = RedisCluster::start();
    let mut conn = cluster.cluster_connection();
    for k in 0..500 {
        let _: () = conn.set(format!("user:{k}"), k).expect("SET");
    }
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let (from_before, to_before) = (slot_count(&mut cluster, from), slot_count(&mut cluster, to));

    let mut reshard = cluster.reshard(from, to, 1000);
    let mut reads = 0;
    while !reshard.is_finished() {
        for k in (0..500).step_by(7) {
            let v: u32 = conn.get(format!("user:{k}")).expect("GET while resharding");
            assert_eq!(v, k);
            reads += 1;
        }
    }
    let took = reshard.wait();
    println!("cluster reshard of 1000 slots (500 keys): {took:?}, {reads} reads during it");
    cluster.wait_ok();

    assert_eq!(slot_count(&mut cluster, from), from_before - 1000);
    assert_eq!(slot_count(&mut cluster, to), to_before + 1000);
    let mut fresh = cluster.cluster_connection();
    for k in 0..500 {
        let v: u32 = fresh.get(format!("user:{k}")).expect("GET after resharding");
        assert_eq!(v, k);
    }
    assert_eq!(cluster.keys("user:*").len(), 500);
}

#[test]
fn script_flush_all_empties_the_script_cache_of_every_node() {
    let mut cluster = RedisCluster::start();
    let script = "return 42";
    let mut sha = String::new();
    for i in 0..cluster.len() {
        sha = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query(&mut cluster.connection(i))
            .expect("LOAD");
    }
    let cached = |cluster: &RedisCluster| -> Vec<bool> {
        (0..cluster.len())
            .map(|i| {
                let exists: Vec<bool> = redis::cmd("SCRIPT")
                    .arg("EXISTS")
                    .arg(&sha)
                    .query(&mut cluster.connection(i))
                    .expect("SCRIPT EXISTS");
                exists[0]
            })
            .collect()
    };
    assert_eq!(cached(&cluster), vec![true; 6]);
    cluster.script_flush_all();
    assert_eq!(cached(&cluster), vec![false; 6]);
}
