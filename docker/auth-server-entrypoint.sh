#!/bin/sh
# Installed as /usr/local/bin/auth-server in the auth-server image; the real
# binary is /usr/local/libexec/auth-server.
#
# The keys folder is usually a bind mount owned by whoever checked out the
# repository, not by the image's user. Started as root (the image default, and
# what `docker compose exec` uses), this wrapper picks the user the server runs
# as and makes the folder writable for it, then drops root for good:
#   - the folder belongs to a non-root uid (a host user): run as that uid and gid,
#     so the keys on the host stay readable by their owner for backups;
#   - the folder belongs to root (e.g. created by the engine): run as `app`
#     (10001) and hand the folder over to it.
# Started as non-root (`user:` in compose, Kubernetes runAsUser), it changes
# nothing and runs the binary as is.
set -eu

real=/usr/local/libexec/auth-server

# The Redis password, as docker-compose.yml hands it over: a file in the `redis-secrets`
# volume (made by docker/redis-secrets.sh), never an environment variable of the
# container. When the file is there, every URL of AUTH_REDIS_URL, AUTH_REDIS_CLUSTER_URLS
# and AUTH_REDIS_SENTINEL_URLS (comma-separated lists) that names no user gets the
# `auth-server` ACL user and that password (on Sentinel the server uses them for the data
# nodes only, as docker-compose.scale.yml needs). The file is root-only: read it before
# dropping root. Nothing here prints the password or a URL.
secret=/run/redis-secrets/auth-server.password
# with_login URLS: URLS with the user and password added to each one that has none.
with_login() {
    out=
    rest=$1,
    while [ -n "$rest" ]; do
        url=${rest%%,*}
        rest=${rest#*,}
        # Spaces around the commas are allowed in the lists; they are not part of a URL.
        url=$(printf '%s' "$url" | tr -d ' ')
        [ -n "$url" ] || continue
        case "$url" in
            *@*) ;;
            redis://* | rediss://*)
                url="${url%%://*}://auth-server:$(tr -d '\n' < "$secret")@${url#*://}"
                ;;
        esac
        out=${out:+$out,}$url
    done
    printf '%s' "$out"
}
if [ -r "$secret" ]; then
    for name in AUTH_REDIS_URL AUTH_REDIS_CLUSTER_URLS AUTH_REDIS_SENTINEL_URLS; do
        eval "value=\${$name:-}"
        if [ -n "$value" ]; then
            eval "$name=\$(with_login \"\$value\")"
            export "${name?}"
        fi
    done
fi

if [ "$(id -u)" != 0 ]; then
    exec "$real" "$@"
fi

keys=${AUTH_KEYS_DIR:-/keys}
mkdir -p "$keys"
uid=$(stat -c %u "$keys")
gid=$(stat -c %g "$keys")
if [ "$uid" = 0 ]; then
    uid=10001
    gid=10001
fi
# Only what the server writes: the folder itself and its private/ and public/
# trees. Anything else in the folder (a README) is left alone.
chown "$uid:$gid" "$keys"
for sub in private public; do
    if [ -e "$keys/$sub" ]; then
        find "$keys/$sub" \( ! -user "$uid" -o ! -group "$gid" \) -exec chown -h "$uid:$gid" {} +
    fi
done

exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$real" "$@"
