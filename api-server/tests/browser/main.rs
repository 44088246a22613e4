//! The reference web client (`web/`) in a real headless Chromium, driven over WebDriver
//! (chromedriver), against the real `auth-server` and `api-server` binaries and a real Redis.
//! `web/` is served by a small actix-files server in this test, on an origin of its own that
//! both servers list; a second origin, not listed, shows what a foreign page gets.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`;
//! scripts/test installs them when missing) and `cargo build --workspace --bins` first. Fails
//! with one line when Chromium is missing: a browser test that skips itself proves nothing.
//!
//! Screenshots of each step land in `$CARGO_TARGET_TMPDIR/browser/` (target/tmp/browser).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use test_support::{RedisServer, free_port, start_server as start, wait_for_port};

const PASSWORD: &str = "correct horse battery staple";
/// Short, so the test sees the page refresh it (proactively and after expiry).
const ACCESS_TTL_SECS: u64 = 4;

/// A process and everything it started (its own process group), stopped on drop by group id:
/// chromedriver and the Chromium it launches.
struct GroupGuard(Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// The first of `names` found on `PATH` or in /usr/bin and /usr/lib/chromium.
fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/bin".into(), "/usr/lib/chromium".into()]);
    names.iter().find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "{base} not ready after 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serves `web/` on `port`, with a `config.js` that points the page at `auth` and `api`.
fn serve_web(port: u16, auth: &str, api: &str) {
    let web_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let config =
        format!("export const config = {{ authUrl: {}, apiUrl: {} }};\n", json!(auth), json!(api));
    let server = HttpServer::new(move || {
        let config = config.clone();
        App::new()
            .route(
                "/config.js",
                web::get().to(move || {
                    let config = config.clone();
                    async move { HttpResponse::Ok().content_type("text/javascript").body(config) }
                }),
            )
            .service(actix_files::Files::new("/", &web_dir).index_file("index.html"))
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .unwrap()
    .run();
    tokio::spawn(server);
}

/// A counter of the auth server's `/metrics`, e.g. `auth_refresh_total{outcome="replay"}`.
async fn metric(http: &reqwest::Client, auth: &str, series: &str) -> f64 {
    let text = http.get(format!("{auth}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

struct Browser {
    client: Client,
    shots: PathBuf,
}

impl Browser {
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits up to 15 s for `script` (a JS expression) to be truthy in the current tab.
    async fn until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.client.execute(&format!("return {script};"), vec![]).await.unwrap();
            if value.as_bool().unwrap_or(false) || (value.is_string() && value != "") {
                return;
            }
            if Instant::now() > deadline {
                let message = self.text("#message").await;
                panic!("waited 15 s for {what} ({script}); the page says: {message}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    async fn text(&self, selector: &str) -> String {
        let script =
            format!("return document.querySelector({})?.textContent ?? '';", json!(selector));
        self.js(&script).await.as_str().unwrap_or_default().to_owned()
    }

    async fn fill(&self, selector: &str, value: &str) {
        let input = self.client.find(Locator::Css(selector)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    async fn click(&self, selector: &str) {
        self.client.find(Locator::Css(selector)).await.unwrap().click().await.unwrap();
    }

    /// The access token of the tabs, asked for over their BroadcastChannel as a new tab does.
    async fn tab_token(&self) -> String {
        let ask = "return new Promise((resolve) => {
            const ch = new BroadcastChannel('articles-auth');
            ch.onmessage = (e) => { if (e.data?.type === 'token') { ch.close(); resolve(e.data.token); } };
            ch.postMessage({ type: 'ask' });
            setTimeout(() => { ch.close(); resolve(null); }, 1500);
        });";
        for _ in 0..5 {
            // A tab answers only while its token has more than a second left.
            if let Value::String(token) = self.js(ask).await {
                return token;
            }
        }
        panic!("no tab answered with its access token");
    }

    /// The page shows the articles of a logged-in user.
    async fn shows_articles(&self) {
        self.until("the articles", "document.querySelectorAll('#articles li').length > 0").await;
    }

    async fn articles_loaded_at(&self) -> u64 {
        let v =
            self.js("return document.querySelector('#articles').dataset.loadedAt ?? '0';").await;
        v.as_str().unwrap_or("0").parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_logs_in_refreshes_once_across_tabs_and_logs_out_in_a_real_browser() {
    let started = Instant::now();
    let (Some(chromium), Some(chromedriver)) =
        (find(&["chromium", "chromium-browser"]), find(&["chromedriver"]))
    else {
        panic!(
            "the browser test needs chromium and chromedriver: apt-get install -y chromium chromium-driver (scripts/test does it)"
        );
    };

    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let keys = dir.path().join("keys");
    let (auth_port, api_port, web_port, foreign_port, driver_port) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let auth = format!("http://127.0.0.1:{auth_port}");
    let api = format!("http://127.0.0.1:{api_port}");
    let web = format!("http://127.0.0.1:{web_port}");
    // Another origin on the same host: same site for cookies, but not listed for CORS.
    let foreign = format!("http://127.0.0.1:{foreign_port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    let _auth_server = start(
        "auth-server",
        &[
            ("AUTH_BIND", format!("127.0.0.1:{auth_port}")),
            ("AUTH_REDIS_URL", redis.url()),
            ("AUTH_KEYS_DIR", keys.display().to_string()),
            ("AUTH_ISSUER", auth.clone()),
            ("AUTH_ACCESS_TOKEN_TTL", ACCESS_TTL_SECS.to_string()),
            ("AUTH_REFRESH_COOKIE", "true".into()),
            ("AUTH_CORS_ORIGINS", web.clone()),
            ("RUST_LOG", "info".into()),
        ],
        &dir.path().join("auth.log"),
    );
    wait_for_port(auth_port, Duration::from_secs(30));
    wait_ready(&http, &auth).await;
    let _api_server = start(
        "api-server",
        &[
            ("API_BIND", format!("127.0.0.1:{api_port}")),
            ("API_KEYS_DIR", keys.join("public").display().to_string()),
            ("API_ISSUER", auth.clone()),
            // No leeway: an expired access token is refused, as a strict server would.
            ("API_LEEWAY", "0".into()),
            ("API_CORS_ORIGINS", web.clone()),
            // Follows the revocation list, so the logged-out session's access token is refused.
            ("API_REVOCATIONS_URL", format!("{auth}/revocations")),
            ("RUST_LOG", "info".into()),
        ],
        &dir.path().join("api.log"),
    );
    wait_for_port(api_port, Duration::from_secs(30));
    wait_ready(&http, &api).await;
    serve_web(web_port, &auth, &api);
    serve_web(foreign_port, &auth, &api);
    wait_for_port(web_port, Duration::from_secs(10));

    let driver = Command::new(&chromedriver)
        .arg(format!("--port={driver_port}"))
        .stdin(Stdio::null())
        .stdout(File::create(dir.path().join("chromedriver.log")).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _driver = GroupGuard(driver);
    wait_for_port(driver_port, Duration::from_secs(20));
    let profile = dir.path().join("chromium-profile");
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1200,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .unwrap_or_else(|e| panic!("chromedriver would not start Chromium: {e}"));
    let b = Browser { client, shots: shots.clone() };

    // 1. Register, then log in (cookie mode).
    b.client.goto(&web).await.unwrap();
    b.until("the login form", "!document.querySelector('#auth-view').hidden").await;
    b.shot("01-login-form").await;
    b.fill("#register-username", "alice").await;
    b.fill("#register-name", "Alice").await;
    b.fill("#register-password", PASSWORD).await;
    b.click("#register-form button[type=submit]").await;
    b.until("the welcome", "document.querySelector('#message').textContent.includes('Welcome')")
        .await;
    b.shot("02-registered").await;
    assert_eq!(b.js("return document.querySelector('#login-username').value;").await, "alice");
    b.fill("#login-password", PASSWORD).await;
    b.click("#login-form button[type=submit]").await;

    // 2. `/me` and the articles are shown.
    b.shows_articles().await;
    b.until("/me", "document.querySelector('#me-username')?.textContent === 'alice'").await;
    b.until("the sessions list", "document.querySelectorAll('#sessions tbody tr').length === 1")
        .await;
    let authors = b.js("return [...document.querySelectorAll('#articles li p.small')].map(p => p.textContent);").await;
    assert!(authors.as_array().unwrap().iter().all(|a| a == "by alice"), "{authors}");
    b.shot("03-articles").await;
    // The access token is in memory only: nothing in web storage but the rotation time.
    let stored = b.js("return JSON.stringify({...localStorage, ...sessionStorage});").await;
    assert!(!stored.as_str().unwrap().contains("eyJ"), "a JWT in web storage: {stored}");

    // 3. Past the access token's lifetime, the articles still load: the page refreshed it.
    let rotated_before = metric(&http, &auth, "auth_refresh_total{outcome=\"rotated\"}").await;
    let loaded = b.articles_loaded_at().await;
    tokio::time::sleep(Duration::from_secs(ACCESS_TTL_SECS + 2)).await;
    b.click("#reload-articles").await;
    b.until(
        "reloaded articles",
        &format!("+document.querySelector('#articles').dataset.loadedAt > {loaded}"),
    )
    .await;
    assert_eq!(b.text("#message").await, "", "no error shown");
    let rotated = metric(&http, &auth, "auth_refresh_total{outcome=\"rotated\"}").await;
    assert!(rotated > rotated_before, "the page never refreshed ({rotated_before} → {rotated})");
    b.shot("04-after-silent-refresh").await;

    // 4. A second tab: it takes the token from the first (no rotation), then both refresh at
    // the same moment (and their timers fire together too, sharing one expiry): the Web Lock
    // lets one rotate and the other take its token. No rotation is ever raced: no grace
    // replay, no reuse detection.
    let replays_before = metric(&http, &auth, "auth_refresh_total{outcome=\"replay\"}").await;
    let first = b.client.window().await.unwrap();
    let second = b.client.new_window(false).await.unwrap().handle;
    b.client.switch_to_window(second.clone()).await.unwrap();
    b.client.goto(&web).await.unwrap();
    b.shows_articles().await;
    b.until(
        "the first tab's token",
        "document.querySelector('#token-status').dataset.received >= 1",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelector('#token-status').dataset.rotations;").await,
        "0"
    );
    let at = b.js("return Date.now() + 1500;").await.as_u64().unwrap();
    let click_at = format!(
        "setTimeout(() => document.querySelector('#refresh-now').click(), {at} - Date.now()); return true;"
    );
    b.js(&click_at).await;
    b.client.switch_to_window(first.clone()).await.unwrap();
    b.js(&click_at).await;
    tokio::time::sleep(Duration::from_secs(ACCESS_TTL_SECS + 2)).await;
    for tab in [&first, &second] {
        b.client.switch_to_window(tab.clone()).await.unwrap();
        let loaded = b.articles_loaded_at().await;
        b.click("#reload-articles").await;
        b.until(
            "reloaded articles",
            &format!("+document.querySelector('#articles').dataset.loadedAt > {loaded}"),
        )
        .await;
        assert_eq!(b.text("#message").await, "", "no error shown");
        assert!(
            b.js("return !document.querySelector('#app-view').hidden;").await.as_bool().unwrap()
        );
    }
    b.shot("05-two-tabs").await;
    assert_eq!(metric(&http, &auth, "auth_refresh_reuse_detected_total").await, 0.0);
    assert_eq!(
        metric(&http, &auth, "auth_refresh_total{outcome=\"replay\"}").await,
        replays_before,
        "two tabs raced a rotation (a grace replay was served)"
    );

    // 5. The account's own routes, cross-origin with the bearer token: change the password
    // (this session stays), end every other session (there is none: still one listed).
    b.client.switch_to_window(first.clone()).await.unwrap();
    b.fill("#current-password", PASSWORD).await;
    b.fill("#new-password", "a new and longer passphrase").await;
    b.click("#password-form button[type=submit]").await;
    b.until(
        "the password changed",
        "document.querySelector('#message').textContent.startsWith('Password changed')",
    )
    .await;
    b.click("#end-others").await;
    b.until(
        "the others ended",
        "document.querySelector('#message').textContent.startsWith('Every other session')",
    )
    .await;
    b.until("one session listed", "document.querySelectorAll('#sessions tbody tr').length === 1")
        .await;
    b.shot("06-password-changed").await;

    // The access token, as another script of the page's origin gets it (the tabs' channel):
    // a real token, that the api-server accepts.
    let access = b.tab_token().await;
    let res = http.get(format!("{api}/me")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);

    // 6. Log out: every tab shows the login form, and the refresh token is dead.
    let cookie = b.client.get_named_cookie("refresh_token").await.unwrap();
    let refresh_token = cookie.value().to_owned();
    assert_eq!(refresh_token.len(), 64);
    assert_eq!(cookie.http_only(), Some(true));
    b.click("#logout").await;
    b.until("the login form", "!document.querySelector('#auth-view').hidden").await;
    b.shot("07-logged-out").await;
    b.client.switch_to_window(second.clone()).await.unwrap();
    b.until("the login form in the other tab", "!document.querySelector('#auth-view').hidden")
        .await;
    assert!(b.client.get_named_cookie("refresh_token").await.is_err(), "the cookie is removed");
    // The old access token is refused by the api-server within the list's 2 s bound...
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let res = http.get(format!("{api}/me")).bearer_auth(&access).send().await.unwrap();
        if res.status() == reqwest::StatusCode::UNAUTHORIZED {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"], "invalid_token", "{body}");
            break;
        }
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        assert!(Instant::now() < deadline, "the old access token still works 2 s after logout");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and the session's refresh token is dead at the auth server.
    let res = http
        .post(format!("{auth}/token"))
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // And the page can no longer refresh: its own attempt has no cookie to send.
    let refresh = b
        .js(&format!(
            "return fetch({}, {{method: 'POST', credentials: 'include'}}).then(r => r.status);",
            json!(format!("{auth}/token"))
        ))
        .await;
    assert_eq!(refresh, 400);

    // 7. A page on an origin the servers do not list cannot read `/me`: the browser blocks it.
    b.client.goto(&foreign).await.unwrap();
    b.until("the error", "document.querySelector('#message').textContent.includes('Cannot reach')")
        .await;
    b.shot("08-unlisted-origin").await;
    let outcome = b
        .js(&format!(
            "return fetch({}).then(r => 'read ' + r.status, e => 'blocked: ' + e.name);",
            json!(format!("{api}/me"))
        ))
        .await;
    assert_eq!(outcome, "blocked: TypeError");

    b.client.close().await.unwrap();
    redis.stop();
    eprintln!(
        "browser test: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}
