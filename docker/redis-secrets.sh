#!/bin/sh
# One-shot `redis-secrets` service of docker-compose.yml: makes the Redis password of the
# auth server on first start and writes the ACL file Redis loads, into the `redis-secrets`
# volume. Run as root in the redis image, before Redis and the auth server start.
#
#   /secrets/auth-server.password  random, 64 hex characters; made once, kept across restarts
#                                  (root-only: read by the auth server's entrypoint as root,
#                                  and by Redis's healthcheck)
#   /secrets/users.acl             rewritten on every start (so a changed rule applies): the
#                                  default user off, the `auth-server` user with the SHA-256 of
#                                  the password and only the command categories it uses
#
# The password is never printed. To change it: stop the stack, remove the volume
# (`docker compose down` without -v keeps it; `docker volume rm articles-auth_redis-secrets`).
set -eu

dir=${REDIS_SECRETS_DIR:-/secrets}
password=$dir/auth-server.password
acl=$dir/users.acl
umask 077

if [ ! -s "$password" ]; then
    # 256 bits; hex, so that it needs no escaping in a redis:// URL.
    head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$password.tmp"
    mv "$password.tmp" "$password"
    echo "redis-secrets: generated a new password for the auth-server Redis user"
else
    echo "redis-secrets: keeping the existing password"
fi
chmod 0600 "$password"

digest=$(tr -d '\n' < "$password" | sha256sum | cut -d' ' -f1)
# The auth server's commands: reads, writes, Lua scripts, streams, transactions and the
# connection commands; never the admin or dangerous ones (CONFIG, FLUSHALL, KEYS, DEBUG, ...),
# except those it needs: TIME (its scripts' clock), INFO and ROLE (readiness, replication) and
# WAIT (writes that must reach a replica), named one by one.
rules='~* resetchannels &* -@all +@read +@write +@scripting +@stream +@transaction +@connection -@dangerous +time +info +role +wait'
{
    echo "user default off"
    echo "user auth-server on #$digest $rules"
} > "$acl.tmp"
# Redis reads the ACL file as its own user (uid 999 in the redis image).
chown "${REDIS_UID:-999}:${REDIS_GID:-999}" "$acl.tmp"
chmod 0400 "$acl.tmp"
mv "$acl.tmp" "$acl"
echo "redis-secrets: wrote the ACL file"
