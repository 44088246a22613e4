# shellcheck shell=bash
# The README's client flow with curl, with every answer checked. Sourced by
# scripts/dev-smoke and scripts/compose-smoke; needs curl and python3.
#
#   source scripts/lib/client-flow.bash
#   client_flow http://127.0.0.1:5000 http://127.0.0.1:4000 alice
#
# Helpers set globals: HTTP_STATUS, HTTP_BODY (text), HTTP_HEADERS (text).
# Tokens from the last login/refresh: ACCESS_TOKEN, REFRESH_TOKEN.

FLOW_TMP=${FLOW_TMP:-$(mktemp -d)}
FLOW_CURL_MAX_TIME=${FLOW_CURL_MAX_TIME:-15}

flow_fail() {
    echo "FAIL: $*" >&2
    if [[ -n ${HTTP_STATUS:-} ]]; then
        echo "  last answer: HTTP $HTTP_STATUS" >&2
        printf '%s\n' "$HTTP_HEADERS" | sed 's/^/  < /' >&2
        printf '  body: %s\n' "$HTTP_BODY" >&2
    fi
    return 1
}

flow_ok() { echo "ok: $*"; }

# http METHOD URL [JSON_BODY] [curl args...]
http() {
    local method=$1 url=$2 body=${3:-}
    shift 3 2>/dev/null || shift $#
    local args=(-sS -X "$method" --max-time "$FLOW_CURL_MAX_TIME" -o "$FLOW_TMP/body" -D "$FLOW_TMP/headers" -w '%{http_code}')
    if [[ -n $body ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    HTTP_STATUS=$(curl "${args[@]}" "$@" "$url") || HTTP_STATUS=000
    HTTP_BODY=$(cat "$FLOW_TMP/body" 2>/dev/null || true)
    HTTP_HEADERS=$(tr -d '\r' <"$FLOW_TMP/headers" 2>/dev/null || true)
}

expect_status() {
    local want=$1 what=$2
    [[ $HTTP_STATUS == "$want" ]] || flow_fail "$what: expected HTTP $want, got $HTTP_STATUS" || return 1
}

# json_check PYTHON_EXPR [JSON]: the expression, with `d` the parsed JSON (the
# last body by default), must be true.
json_check() {
    local expr=$1 json=${2-$HTTP_BODY}
    python3 -c '
import json, sys
d = json.loads(sys.argv[2])
sys.exit(0 if eval(sys.argv[1]) else 1)
' "$expr" "$json" 2>/dev/null
}

# json_get KEY [JSON]: a top-level field, strings raw.
json_get() {
    python3 -c '
import json, sys
v = json.loads(sys.argv[2]).get(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))
' "$1" "${2-$HTTP_BODY}"
}

# jwt_header TOKEN: the decoded JOSE header (JSON), read only, never verified.
jwt_header() {
    python3 -c '
import base64, sys
h = sys.argv[1].split(".")[0]
print(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)).decode())
' "$1"
}

header_value() {
    printf '%s\n' "$HTTP_HEADERS" | awk -v name="$1" '
        tolower($0) ~ "^" tolower(name) ":" { sub(/^[^:]*:[ \t]*/, ""); print; exit }'
}

# An error body of the contract: {"error": CODE, "error_description": "..."}.
expect_error() {
    local status=$1 code=$2 what=$3
    expect_status "$status" "$what" || return 1
    json_check "d['error'] == '$code' and isinstance(d.get('error_description'), str)" ||
        flow_fail "$what: expected error '$code' with an error_description" || return 1
}

# wait_ready URL SECONDS: poll until 200.
wait_ready() {
    local url=$1 seconds=$2 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if [[ $(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$url" || true) == 200 ]]; then
            return 0
        fi
        sleep 0.5
    done
    echo "FAIL: $url not ready within ${seconds}s" >&2
    return 1
}

# A token response (login, refresh): checks it and sets ACCESS_TOKEN/REFRESH_TOKEN.
expect_token_response() {
    local what=$1
    expect_status 200 "$what" || return 1
    json_check 'd["token_type"] == "Bearer" and d["access_token"].count(".") == 2 and isinstance(d["expires_in"], int) and d["expires_in"] > 0 and len(d["refresh_token"]) >= 32 and isinstance(d["refresh_expires_in"], int)' ||
        flow_fail "$what: not a token response" || return 1
    [[ $(header_value Cache-Control) == *no-store* ]] || flow_fail "$what: Cache-Control: no-store missing" || return 1
    ACCESS_TOKEN=$(json_get access_token)
    REFRESH_TOKEN=$(json_get refresh_token)
    json_check 'd["alg"] == "RS256" and d["typ"] == "at+jwt" and len(d["kid"]) > 0' "$(jwt_header "$ACCESS_TOKEN")" ||
        flow_fail "$what: access token header is $(jwt_header "$ACCESS_TOKEN")" || return 1
}

login() {
    local auth=$1 user=$2 password=$3
    http POST "$auth/login" "{\"username\": \"$user\", \"password\": \"$password\"}"
    expect_token_response "POST /login as $user"
}

refresh() {
    local auth=$1 token=$2
    http POST "$auth/token" "{\"refresh_token\": \"$token\"}"
    expect_token_response "POST /token"
}

# articles API TOKEN USER: GET /articles answers 200 with USER's articles only.
expect_articles() {
    local api=$1 token=$2 user=$3
    http GET "$api/articles" "" -H "Authorization: Bearer $token"
    expect_status 200 "GET /articles" || return 1
    json_check "isinstance(d, list) and len(d) > 0 and all(a['author'] == '$user' and {'id', 'title', 'body'} <= a.keys() for a in d)" ||
        flow_fail "GET /articles: expected a non-empty list of $user's articles" || return 1
}

kid_of() { json_get kid "$(jwt_header "$1")"; }

# client_flow AUTH_URL API_URL USER: register, log in, read, refresh, log out.
client_flow() {
    local auth=$1 api=$2 user=$3 password="correct horse battery staple"

    http GET "$auth/readyz"
    expect_status 200 "GET $auth/readyz" || return 1
    http GET "$api/readyz"
    expect_status 200 "GET $api/readyz" || return 1
    flow_ok "both servers ready"

    http POST "$auth/register" "{\"username\": \"$user\", \"password\": \"$password\", \"name\": \"Alice Liddell\"}"
    expect_status 201 "POST /register" || return 1
    json_check "d['username'] == '$user' and d['name'] == 'Alice Liddell' and len(d['id']) > 0" ||
        flow_fail "POST /register: unexpected body" || return 1
    flow_ok "POST /register → 201 $HTTP_BODY"

    http POST "$auth/register" "{\"username\": \"$user\", \"password\": \"$password\"}"
    expect_error 409 username_taken "POST /register again" || return 1
    http POST "$auth/register" '{"username": "x", "password": "short"}'
    expect_error 400 invalid_request "POST /register with bad fields" || return 1
    flow_ok "POST /register → 409 username_taken, 400 invalid_request"

    http POST "$auth/login" "{\"username\": \"$user\", \"password\": \"wrong password\"}"
    expect_error 401 invalid_credentials "POST /login with a wrong password" || return 1
    login "$auth" "$user" "$password" || return 1
    local first_access=$ACCESS_TOKEN first_refresh=$REFRESH_TOKEN
    flow_ok "POST /login → 200 (wrong password → 401), token kid $(kid_of "$ACCESS_TOKEN")"

    http GET "$auth/.well-known/jwks.json"
    expect_status 200 "GET /.well-known/jwks.json" || return 1
    json_check "any(k['kid'] == '$(kid_of "$ACCESS_TOKEN")' and k['kty'] == 'RSA' and k['alg'] == 'RS256' for k in d['keys'])" ||
        flow_fail "JWKS lacks the signing key" || return 1
    flow_ok "GET /.well-known/jwks.json lists the signing key"

    http GET "$api/articles"
    expect_status 401 "GET /articles without a token" || return 1
    [[ $(header_value WWW-Authenticate) == Bearer* ]] || flow_fail "401 without WWW-Authenticate: Bearer" || return 1
    http GET "$api/articles" "" -H "Authorization: Bearer not.a.token"
    expect_error 401 invalid_token "GET /articles with a bad token" || return 1
    expect_articles "$api" "$ACCESS_TOKEN" "$user" || return 1
    flow_ok "GET /articles → 200 with $user's articles (no token → 401, bad token → 401 invalid_token)"

    http GET "$api/me" "" -H "Authorization: Bearer $ACCESS_TOKEN"
    expect_status 200 "GET /me" || return 1
    json_check "d['preferred_username'] == '$user' and 'articles:read' in d['scope']" ||
        flow_fail "GET /me: unexpected body" || return 1
    flow_ok "GET /me → 200"

    refresh "$auth" "$first_refresh" || return 1
    [[ $REFRESH_TOKEN != "$first_refresh" && $ACCESS_TOKEN != "$first_access" ]] ||
        flow_fail "POST /token did not rotate the refresh token" || return 1
    expect_articles "$api" "$ACCESS_TOKEN" "$user" || return 1
    flow_ok "POST /token → 200 with a new pair, which reads the articles"

    http POST "$auth/logout" "{\"refresh_token\": \"$REFRESH_TOKEN\"}"
    expect_status 204 "POST /logout" || return 1
    http POST "$auth/token" "{\"refresh_token\": \"$REFRESH_TOKEN\"}"
    expect_error 400 invalid_grant "POST /token after logout" || return 1
    flow_ok "POST /logout → 204; the refresh token is dead afterwards (400 invalid_grant)"
}
