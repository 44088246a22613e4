#!/bin/sh
# One-shot `redis-secrets` service of docker-compose.yml: makes the Redis password of the
# auth server on first start and writes the ACL file Redis loads, into the `redis-secrets`
# volume. Run as root in the redis image, before Redis and the auth server start.
#
#   /secrets/auth-server.password  random, 64 hex characters; made once, kept across restarts
#                                  (root-only: read by the auth server's entrypoint as root,
#                                  and by Redis's healthcheck)
#   /secrets/users.acl             rewritten on every start (so a changed rule applies): the
#                                  default user off (no login), the `auth-server` user with the
#                                  SHA-256 of the password and only the command categories it uses
#
# With REDIS_REPLICATION=yes (docker-compose.scale.yml: a primary, a replica, three sentinels)
# it also makes, the same way:
#   /secrets/replication.password  the `replication` user's: a replica logs in to its primary
#                                  with it (PSYNC, REPLCONF, PING only)
#   /secrets/replication.conf      `masteruser`/`masterauth` for redis-server (owned by Redis's
#                                  user, 0400): every data node has it, as any may become a replica
#   /secrets/sentinel.password     the `sentinel` user's: the sentinels log in to the data nodes
#                                  with it to monitor them and run a failover (docker/redis-sentinel.sh)
#
# The password is never printed. To change it: stop the stack, remove the volume
# (`docker compose down` without -v keeps it; `docker volume rm articles-auth_redis-secrets`).
set -eu

dir=${REDIS_SECRETS_DIR:-/secrets}
password=$dir/auth-server.password
acl=$dir/users.acl
umask 077

# make_password FILE USER: a password made once and kept across restarts (root-only).
make_password() {
    if [ ! -s "$1" ]; then
        # 256 bits; hex, so that it needs no escaping in a redis:// URL or a config file.
        head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$1.tmp"
        mv "$1.tmp" "$1"
        echo "redis-secrets: generated a new password for the $2 Redis user"
    else
        echo "redis-secrets: keeping the existing password of the $2 Redis user"
    fi
    chmod 0600 "$1"
}
# digest FILE: the SHA-256 of the password in FILE, as an ACL file takes it (#<hex>).
digest() {
    tr -d '\n' < "$1" | sha256sum | cut -d' ' -f1
}

make_password "$password" auth-server
digest=$(digest "$password")
# The auth server's commands: reads, writes, Lua scripts, streams, transactions and the
# connection commands; never the admin or dangerous ones (CONFIG, FLUSHALL, KEYS, DEBUG, ...),
# except those it needs: TIME (its scripts' clock), INFO and ROLE (readiness, replication) and
# WAIT (writes that must reach a replica), named one by one.
rules='~* resetchannels &* -@all +@read +@write +@scripting +@stream +@transaction +@connection -@dangerous +time +info +role +wait'
# The default user is `off` (no client can log in as it) but keeps every permission: Redis
# replays the append-only file as the default user and, up to 7.x, re-checks a MULTI/EXEC's
# permissions at its EXEC, so a default user without them silently drops every script's writes
# on restart (redis/redis#14541, fixed in 8.x; the sessions' rotations are such writes).
{
    echo "user default off resetchannels ~* &* +@all"
    echo "user auth-server on #$digest $rules"
} > "$acl.tmp"

case ${REDIS_REPLICATION:-no} in
    yes)
        make_password "$dir/replication.password" replication
        make_password "$dir/sentinel.password" sentinel
        # What a replica sends its primary, and what a sentinel sends the data nodes (the
        # rules of Redis's own documentation, "Redis Sentinel", "Redis ACL"): nothing else.
        {
            echo "user replication on #$(digest "$dir/replication.password") resetchannels -@all +psync +replconf +ping"
            echo "user sentinel on #$(digest "$dir/sentinel.password") resetchannels &* -@all +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill"
        } >> "$acl.tmp"
        {
            echo "masteruser replication"
            echo "masterauth $(tr -d '\n' < "$dir/replication.password")"
        } > "$dir/replication.conf.tmp"
        chown "${REDIS_UID:-999}:${REDIS_GID:-999}" "$dir/replication.conf.tmp"
        chmod 0400 "$dir/replication.conf.tmp"
        mv "$dir/replication.conf.tmp" "$dir/replication.conf"
        echo "redis-secrets: wrote the replication settings"
        ;;
    no) ;;
    *)
        echo "redis-secrets: REDIS_REPLICATION must be yes or no" >&2
        exit 1
        ;;
esac
# Redis reads the ACL file as its own user (uid 999 in the redis image).
chown "${REDIS_UID:-999}:${REDIS_GID:-999}" "$acl.tmp"
chmod 0400 "$acl.tmp"
mv "$acl.tmp" "$acl"
echo "redis-secrets: wrote the ACL file"
