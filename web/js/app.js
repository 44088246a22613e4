// The page: forms, lists and buttons over `session.js` (tokens) and `api.js` (HTTP).
// Everything shown comes from the servers and is set as text, never as HTML.

import { config } from "../config.js";
import { call, explain } from "./api.js";
import * as session from "./session.js";

const $ = (selector) => document.querySelector(selector);

function show(view) {
  $("#loading").hidden = true;
  $("#auth-view").hidden = view !== "auth";
  $("#app-view").hidden = view !== "app";
  $("#session-actions").hidden = view !== "app";
  $("#who").hidden = view !== "app";
}

function message(text, kind = "error") {
  const box = $("#message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

/** Runs `work` with `button` disabled; a failure is shown as a message. */
async function busy(button, work) {
  if (button) button.disabled = true;
  try {
    await work();
  } catch (err) {
    message(explain(err));
  } finally {
    if (button) button.disabled = false;
  }
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function when(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// --- what is shown while logged in -------------------------------------------------------

async function loadMe() {
  const me = await session.authed(`${config.apiUrl}/me`);
  $("#who").textContent = `Logged in as ${me.name || me.preferred_username}`;
  const list = $("#me");
  list.replaceChildren();
  const rows = [
    ["Username", me.preferred_username],
    ["Name", me.name ?? "–"],
    ["Roles", (me.roles ?? []).join(", ") || "–"],
    ["Scope", me.scope],
    ["User id", me.sub],
  ];
  for (const [term, value] of rows) {
    list.append(el("dt", term), el("dd", value));
  }
  list.querySelector("dd").id = "me-username";
}

async function loadArticles() {
  const articles = await session.authed(`${config.apiUrl}/articles`);
  const list = $("#articles");
  list.replaceChildren(
    ...articles.map((a) => {
      const item = el("li");
      item.dataset.id = a.id;
      item.append(el("h3", a.title), el("p", a.body), el("p", `by ${a.author}`, "small"));
      return item;
    }),
  );
  $("#no-articles").hidden = articles.length > 0;
  list.dataset.loadedAt = String(Date.now());
}

async function loadSessions() {
  const sessions = await session.authed(`${config.authUrl}/sessions`);
  const body = $("#sessions tbody");
  body.replaceChildren(
    ...sessions.map((s) => {
      const row = el("tr");
      row.dataset.sid = s.sid;
      const device = el("td", s.user_agent ?? "unknown", "device");
      if (s.current) device.append(" ", el("span", "this browser", "badge"));
      const end = el("td");
      if (!s.current) {
        const button = el("button", "Log out", "danger");
        button.type = "button";
        button.addEventListener("click", () =>
          busy(button, async () => {
            await session.authed(`${config.authUrl}/sessions/${encodeURIComponent(s.sid)}`, {
              method: "DELETE",
            });
            message("That session has ended.", "info");
            await loadSessions();
          }),
        );
        end.append(button);
      }
      row.append(device, el("td", s.address ?? "–"), el("td", when(s.created_at)),
        el("td", when(s.last_used_at)), el("td", when(s.expires_at)), end);
      return row;
    }),
  );
}

async function loadAll() {
  await loadMe();
  await Promise.all([loadArticles(), loadSessions()]);
}

function tokenStatus() {
  const status = $("#token-status");
  if (!session.loggedIn()) {
    status.textContent = "";
    return;
  }
  const secs = Math.ceil(session.expiresInMs() / 1000);
  status.textContent =
    `Access token valid for ${secs} s more. This tab rotated the refresh cookie ` +
    `${session.stats.rotations}× and took ${session.stats.received} token(s) from other tabs.`;
  status.dataset.rotations = String(session.stats.rotations);
  status.dataset.received = String(session.stats.received);
}

// --- the forms and buttons ---------------------------------------------------------------

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const button = event.submitter;
  busy(button, async () => {
    await session.login($("#login-username").value.trim(), $("#login-password").value);
    $("#login-password").value = "";
    message("");
    // The "token" event shows the page.
  });
});

$("#register-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(event.submitter, async () => {
    const username = $("#register-username").value.trim();
    const name = $("#register-name").value.trim();
    const user = await call(`${config.authUrl}/register`, {
      method: "POST",
      body: { username, password: $("#register-password").value, ...(name ? { name } : {}) },
    });
    $("#register-form").reset();
    $("#login-username").value = user.username;
    $("#login-password").focus();
    message(`Welcome, ${user.name || user.username}: your account is ready. Log in.`, "info");
  });
});

$("#logout").addEventListener("click", (event) =>
  busy(event.currentTarget, async () => {
    await session.logout();
    message("You are logged out.", "info");
  }),
);

$("#refresh-now").addEventListener("click", (event) =>
  busy(event.currentTarget, async () => {
    await session.refresh();
  }),
);

$("#reload-articles").addEventListener("click", (event) => busy(event.currentTarget, loadArticles));
$("#reload-sessions").addEventListener("click", (event) => busy(event.currentTarget, loadSessions));

$("#end-others").addEventListener("click", (event) =>
  busy(event.currentTarget, async () => {
    await session.authed(`${config.authUrl}/sessions/others`, { method: "DELETE" });
    message("Every other session has ended.", "info");
    await loadSessions();
  }),
);

$("#password-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(event.submitter, async () => {
    await session.authed(`${config.authUrl}/password`, {
      method: "POST",
      body: {
        current_password: $("#current-password").value,
        new_password: $("#new-password").value,
      },
    });
    $("#password-form").reset();
    message("Password changed. Every other session has ended.", "info");
    await loadSessions();
  });
});

// --- the session's life ------------------------------------------------------------------

let shown = false;
session.subscribe((event) => {
  tokenStatus();
  if (event === "token" && !shown) {
    shown = true;
    show("app");
    busy(null, loadAll);
  } else if (event === "ended") {
    shown = false;
    show("auth");
    $("#articles").replaceChildren();
    $("#sessions tbody").replaceChildren();
  }
});
setInterval(tokenStatus, 1000);

session
  .resume()
  .then((ok) => {
    if (!ok) show("auth");
  })
  .catch((err) => {
    show("auth");
    message(explain(err));
  });
