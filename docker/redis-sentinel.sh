#!/bin/sh
# The sentinels of docker-compose.scale.yml (services sentinel-1..3). Run as root in the redis
# image: writes /data/sentinel.conf on the container's first start, then runs Redis Sentinel as
# Redis's user through the image's entrypoint. Sentinel rewrites that file as it learns the
# group (replicas, other sentinels, a failover's new master): on a restart it is kept, so a
# sentinel comes back knowing the current master rather than the first one.
#
#   SENTINEL_ANNOUNCE   this sentinel's service name (what the others and the clients use)
#   SENTINEL_MASTER     the group's name [auth-redis] (AUTH_REDIS_SENTINEL_MASTER)
#   SENTINEL_MONITOR    host and port of the first master [redis 6379]
#   SENTINEL_QUORUM     sentinels that must agree the master is down [2]
#   SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS
#
# The sentinel logs in to the data nodes as the `sentinel` ACL user, with the password that
# docker/redis-secrets.sh made (never printed). The sentinel itself asks no password: the auth
# servers query it without one (README, "Running at scale"), so it lives on the internal
# `backend` network only, with no published port.
set -eu

conf=/data/sentinel.conf
master=${SENTINEL_MASTER:-auth-redis}
monitor=${SENTINEL_MONITOR:-redis 6379}
umask 077

if [ ! -s "$conf" ]; then
    : "${SENTINEL_ANNOUNCE:?SENTINEL_ANNOUNCE must name this sentinel}"
    {
        echo "port 26379"
        # Reached by the auth servers and the other sentinels over the backend network.
        echo "protected-mode no"
        # Names, not container addresses: a restarted container gets a new address.
        echo "sentinel resolve-hostnames yes"
        echo "sentinel announce-hostnames yes"
        echo "sentinel announce-ip $SENTINEL_ANNOUNCE"
        echo "sentinel monitor $master $monitor ${SENTINEL_QUORUM:-2}"
        echo "sentinel auth-user $master sentinel"
        echo "sentinel auth-pass $master $(tr -d '\n' < /secrets/sentinel.password)"
        echo "sentinel down-after-milliseconds $master ${SENTINEL_DOWN_AFTER_MS:-2000}"
        echo "sentinel failover-timeout $master ${SENTINEL_FAILOVER_TIMEOUT_MS:-10000}"
        echo "sentinel parallel-syncs $master 1"
    } > "$conf.tmp"
    mv "$conf.tmp" "$conf"
    echo "redis-sentinel: wrote $conf (monitors $master at $monitor)"
fi
# Sentinel rewrites its file (and writes a temporary one beside it) as Redis's user.
chown -R "${REDIS_UID:-999}:${REDIS_GID:-999}" /data

exec docker-entrypoint.sh redis-server "$conf" --sentinel
