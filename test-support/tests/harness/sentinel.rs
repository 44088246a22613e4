use redis::Commands;
use test_support::{RedisSentinel, info_field};

use crate::timed;

fn role_of(conn: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO").arg("replication").query(conn).expect("INFO");
    info_field(&info, "role").expect("a role").to_owned()
}

#[test]
fn sentinels_report_the_master_and_promote_the_replica_with_its_data_when_it_is_killed() {
    let mut group = timed("sentinel start-up", RedisSentinel::start);
    let [first, second] = group.data_ports()[..] else { panic!("two data nodes") };
    assert_eq!(group.master_addr(), ("127.0.0.1".to_owned(), first));
    for i in 0..3 {
        let addr: (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(group.master_name())
            .query(&mut group.sentinel_connection(i))
            .expect("ask a sentinel");
        assert_eq!(addr.1, first, "sentinel {i}");
    }
    assert_eq!(
        group.env(),
        vec![
            ("AUTH_REDIS_SENTINEL_URLS".to_owned(), group.sentinel_urls_csv()),
            (
                "AUTH_REDIS_SENTINEL_MASTER".to_owned(),
                RedisSentinel::DEFAULT_MASTER_NAME.to_owned()
            ),
        ]
    );
    assert_eq!(group.sentinel_urls().len(), 3);
    assert!(group.sentinel_urls().iter().all(|u| crate::url_port(u) != 6379));

    let mut master = group.master_connection();
    let _: () = master.set("session:1", "kept").expect("SET");
    let acked: u32 = redis::cmd("WAIT").arg(1).arg(1000).query(&mut master).expect("WAIT");
    assert_eq!(acked, 1, "the replica acknowledged the write");

    let promoted = timed("sentinel kill_master until promoted", || group.kill_master());
    assert_eq!(promoted, second);
    assert_eq!(group.master_port(), second);
    let mut master = group.master_connection();
    assert_eq!(role_of(&mut master), "master");
    let v: String = master.get("session:1").expect("GET on the new master");
    assert_eq!(v, "kept");

    timed("sentinel restart_old_master", || group.restart_old_master());
    let mut old = group.data_connection(0);
    assert_eq!(role_of(&mut old), "slave");
    let v: String = old.get("session:1").expect("GET on the old master, now a replica");
    assert_eq!(v, "kept");
}

#[test]
fn a_sentinel_failover_swaps_master_and_replica_and_keeps_the_data() {
    let mut group = RedisSentinel::start();
    let [_, second] = group.data_ports()[..] else { panic!("two data nodes") };
    let _: () = group.master_connection().set("k", "v").expect("SET");
    let promoted = timed("sentinel failover", || group.failover());
    assert_eq!(promoted, second);
    assert_eq!(role_of(&mut group.data_connection(0)), "slave");
    let v: String = group.master_connection().get("k").expect("GET");
    assert_eq!(v, "v");
    let v: String = group.data_connection(0).get("k").expect("GET on the demoted master");
    assert_eq!(v, "v");
}

#[test]
fn a_killed_master_that_comes_back_stale_is_demoted_by_the_sentinels() {
    let mut group = RedisSentinel::start();
    let [first, second] = group.data_ports()[..] else { panic!("two data nodes") };
    assert_eq!(group.kill_master(), second);
    let _: () = group.master_connection().set("written-after-failover", 1).expect("SET");
    timed("sentinel restart_old_master_stale until demoted", || group.restart_old_master_stale());
    let mut old = group.data_connection(0);
    assert_eq!(role_of(&mut old), "slave");
    let info: String = redis::cmd("INFO").arg("replication").query(&mut old).expect("INFO");
    assert_eq!(info_field(&info, "master_port"), Some(second.to_string().as_str()));
    assert_ne!(group.master_port(), first);
}
