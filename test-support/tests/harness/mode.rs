use test_support::{RedisMode, RedisOptions, TestRedis};

use crate::timed;

#[test]
fn every_mode_yields_its_variables_and_one_connection_reaching_every_key() {
    let expected: [(RedisMode, &[&str]); 3] = [
        (RedisMode::Standalone, &["AUTH_REDIS_URL"]),
        (RedisMode::Cluster, &["AUTH_REDIS_CLUSTER_URLS"]),
        (RedisMode::Sentinel, &["AUTH_REDIS_SENTINEL_URLS", "AUTH_REDIS_SENTINEL_MASTER"]),
    ];
    for (mode, names) in expected {
        let mut redis = timed(&format!("TestRedis::start({mode})"), || TestRedis::start(mode));
        assert_eq!(redis.mode(), mode);
        let env = redis.env();
        assert_eq!(env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), names, "{mode}");
        assert!(env.iter().all(|(_, v)| !v.contains(":6379")), "{env:?}");

        let mut conn = redis.connection();
        for k in 0..30 {
            let _: () =
                redis::cmd("SET").arg(format!("k:{k}")).arg(k).query(&mut conn).expect("SET");
        }
        let v: u32 = redis.query(redis::cmd("GET").arg("k:17"));
        assert_eq!(v, 17, "{mode}");
        assert_eq!(redis.keys("k:*").len(), 30, "{mode}");

        let sha: String = redis.query(redis::cmd("SCRIPT").arg("LOAD").arg("return 1"));
        redis.script_flush();
        let exists: Vec<bool> = redis.query(redis::cmd("SCRIPT").arg("EXISTS").arg(&sha));
        assert_eq!(exists, vec![false], "{mode}");

        redis.flushall();
        assert!(redis.keys("k:*").is_empty(), "{mode}");
    }
}

#[test]
fn a_tls_cluster_with_an_acl_user_serves_clients_that_trust_the_ca() {
    let options =
        RedisOptions::new().tls(true).acl_user("app", "app-password", "~* +@all -@dangerous");
    let mut redis =
        timed("TLS + ACL cluster start-up", || TestRedis::start_with(RedisMode::Cluster, options));
    let cluster = redis.as_cluster().expect("a cluster");
    assert!(cluster.urls().iter().all(|u| u.starts_with("rediss://")));
    let mut conn =
        cluster.client_as("app").get_connection().expect("TLS cluster connection as app");
    for k in 0..50 {
        let _: () =
            redis::cmd("SET").arg(format!("k:{k}")).arg(k).query(&mut conn).expect("SET as app");
    }
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut conn);
    assert!(flush.as_ref().is_err_and(crate::is_noperm), "{flush:?}");
    // A failover over the TLS bus still works and keeps the data.
    let owner = cluster.primary_for_key("k:7");
    cluster.failover(owner);
    let v: u32 = redis.query(redis::cmd("GET").arg("k:7"));
    assert_eq!(v, 7);
    assert!(redis.env().iter().any(|(k, _)| k == "SSL_CERT_FILE"));
}

#[test]
fn a_tls_sentinel_group_with_an_acl_user_promotes_the_replica() {
    let options = RedisOptions::new().tls(true).acl_user("app", "app-password", "~* +@all");
    let mut redis = timed("TLS + ACL sentinel start-up", || {
        TestRedis::start_with(RedisMode::Sentinel, options)
    });
    let group = redis.as_sentinel().expect("a sentinel group");
    assert!(group.sentinel_urls().iter().all(|u| u.starts_with("rediss://")));
    let url = group.master_url_as("app");
    assert!(url.starts_with("rediss://app:app-password@127.0.0.1:"), "{url}");
    let mut master = group.master_connection();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut master).expect("SET");
    let _: u32 = redis::cmd("WAIT").arg(1).arg(1000).query(&mut master).expect("WAIT");
    let promoted = group.kill_master();
    assert_eq!(promoted, group.data_ports()[1]);
    let v: String = redis.query(redis::cmd("GET").arg("k"));
    assert_eq!(v, "v");
}
