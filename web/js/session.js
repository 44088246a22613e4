// The session as this tab sees it: the access token (in this module's memory only: never in
// localStorage, sessionStorage or a cookie), kept fresh with the refresh cookie, and shared
// with the other open tabs of this origin so that they refresh it once between them.
//
// - The refresh token is an HttpOnly cookie set by the auth server (cookie mode): this code
//   never sees it. `POST /token` with `credentials: "include"` rotates it.
// - A refresh happens shortly before the access token expires, and after a 401 from a server.
// - Tabs take the Web Lock `LOCK` around a refresh, so only one rotation is in flight at a
//   time across the browser; the winner sends the new access token to the other tabs over a
//   BroadcastChannel, and a tab that waited for the lock uses that token instead of rotating
//   again. (Had two tabs raced anyway, the auth server's reuse grace would hand both the same
//   pair: racing is safe, only wasteful.)
// - A tab that opens asks the others for the token before it spends a rotation.
// - Logging out in one tab logs out all of them.

import { config } from "../config.js";
import { ApiError, call } from "./api.js";

const LOCK = "articles-auth:refresh";
// When a tab last rotated (a time, never a token): a tab that got the lock after waiting for
// it knows a rotation happened meanwhile, and waits for the token to arrive on the channel.
const ROTATED_AT = "articles-auth:rotated-at";
const channel = new BroadcastChannel("articles-auth");

let token = null;
let expiresAt = 0; // ms since the epoch, this machine's clock
let lifetime = 0; // ms, `expires_in` of the token response
let timer = null;
const listeners = new Set();

/** What this tab did: shown on the page (and read by the browser tests). */
export const stats = { rotations: 0, received: 0 };

/** Calls `fn(event)` on "token" (a new access token) and "ended" (logged out, or the session
 * ended elsewhere); returns a function that stops it. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(event) {
  for (const fn of listeners) fn(event);
}

/** Whether there is an access token. */
export function loggedIn() {
  return token !== null;
}

/** Milliseconds before the access token expires (0 without one). */
export function expiresInMs() {
  return token ? Math.max(0, expiresAt - Date.now()) : 0;
}

function fresh(marginMs) {
  return token !== null && expiresAt - Date.now() > marginMs;
}

/** Refresh this long before expiry: a fifth of the lifetime, between 1 s and 60 s. */
function lead() {
  return Math.min(60_000, Math.max(1_000, lifetime / 5));
}

function accept(newToken, newExpiresAt, newLifetime) {
  token = newToken;
  expiresAt = newExpiresAt;
  lifetime = newLifetime;
  clearTimeout(timer);
  timer = setTimeout(() => {
    refresh(token).catch(() => {});
  }, Math.max(0, expiresAt - lead() - Date.now()));
  emit("token");
}

function share() {
  channel.postMessage({ type: "token", token, expiresAt, lifetime });
}

function fromResponse(data) {
  if (data.refresh_token) {
    console.warn("the auth server sent the refresh token in the body: set AUTH_REFRESH_COOKIE=true");
  }
  const ms = data.expires_in * 1000;
  accept(data.access_token, Date.now() + ms, ms);
  share();
}

function end() {
  token = null;
  expiresAt = 0;
  clearTimeout(timer);
  emit("ended");
}

channel.addEventListener("message", ({ data }) => {
  if (data?.type === "token" && typeof data.token === "string") {
    if (data.token !== token && data.expiresAt > expiresAt) {
      stats.received += 1;
      accept(data.token, data.expiresAt, data.lifetime);
    }
  } else if (data?.type === "ask" && fresh(1_000)) {
    share();
  } else if (data?.type === "ended") {
    if (token !== null) end();
  }
});

/** Resolves once this tab holds an access token other than `stale`, or after `ms`. */
function arrival(stale, ms) {
  if (token !== null && token !== stale) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      off();
      resolve();
    };
    const t = setTimeout(done, ms);
    const off = subscribe(() => {
      if (token !== null && token !== stale) done();
    });
  });
}

/**
 * A new access token, once across the tabs: `stale` is the token the caller found wanting
 * (expiring, or refused with a 401). Rejects with the `ApiError` of `POST /token`; when the
 * session is over (`invalid_grant`, or no cookie: `invalid_request`) every tab is logged out.
 */
export function refresh(stale = token) {
  const askedAt = Date.now();
  return navigator.locks.request(LOCK, async () => {
    if (Number(localStorage.getItem(ROTATED_AT) ?? 0) >= askedAt) {
      await arrival(stale, 1_000); // another tab rotated while this one waited
    }
    if (token !== null && token !== stale && fresh(lead() / 2)) return token;
    let data;
    try {
      data = await call(`${config.authUrl}/token`, { method: "POST", credentials: "include" });
    } catch (err) {
      if (err instanceof ApiError && (err.code === "invalid_grant" || err.code === "invalid_request")) {
        end();
        channel.postMessage({ type: "ended" });
      }
      throw err;
    }
    localStorage.setItem(ROTATED_AT, String(Date.now()));
    stats.rotations += 1;
    fromResponse(data);
    return token;
  });
}

/** On page load: the token of another open tab, else one from the refresh cookie, else
 * none (resolves to whether there is a session). */
export async function resume() {
  channel.postMessage({ type: "ask" });
  await arrival(null, 250);
  if (token !== null) return true;
  try {
    await refresh(null);
    return true;
  } catch (err) {
    if (err instanceof ApiError && (err.code === "invalid_grant" || err.code === "invalid_request")) {
      return false;
    }
    throw err;
  }
}

/** `POST /login`: the refresh cookie is set by the answer; every tab gets the access token. */
export async function login(username, password) {
  const data = await call(`${config.authUrl}/login`, {
    method: "POST",
    body: { username, password },
    credentials: "include",
  });
  fromResponse(data);
}

/** `POST /logout` with the cookie (the answer removes it); every tab is logged out. */
export async function logout() {
  try {
    await call(`${config.authUrl}/logout`, { method: "POST", credentials: "include" });
  } finally {
    end();
    channel.postMessage({ type: "ended" });
  }
}

/**
 * A request with the access token: refreshed first when it is about to expire, and once more
 * after a 401 `invalid_token` (expired early, or its key rotated), then retried once.
 */
export async function authed(url, options = {}) {
  if (!fresh(1_000)) await refresh(token);
  const used = token;
  try {
    return await call(url, { ...options, token: used });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401 || err.code !== "invalid_token") throw err;
    await refresh(used);
    return call(url, { ...options, token });
  }
}

/** Forgets the session in this tab only (e.g. after ending it from the sessions list). */
export function forget() {
  end();
  channel.postMessage({ type: "ended" });
}
