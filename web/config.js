// Where this page finds the two servers. Edit this file to deploy the client elsewhere (see
// the README, "Browser clients"); it is the only file that knows the servers' URLs.
//
// What matters is the *browser's* view, not the network's:
//
// - The servers must list this page's origin (what the address bar shows: scheme, host and
//   port, e.g. http://127.0.0.1:8080) in AUTH_CORS_ORIGINS and API_CORS_ORIGINS, or the
//   browser hides their answers from this page.
// - The refresh cookie is sent only if the auth server is on the same *site* as this page
//   (same scheme and host name; ports do not count), or, across sites, with
//   AUTH_REFRESH_COOKIE_SAMESITE=none (https only) and a browser that allows third-party
//   cookies. So open the page with the same host name the auth server is reached by:
//   http://127.0.0.1:8080 with http://127.0.0.1:5000 works; http://localhost:8080 with
//   http://127.0.0.1:5000 does not (different sites: the cookie stays behind).
//
// The defaults therefore take the host name the page was opened with, and the ports of
// `docker compose up`: opened as http://127.0.0.1:8080 they are http://127.0.0.1:5000 and
// http://127.0.0.1:4000; opened as http://localhost:8080, the same on localhost.
const host = globalThis.location?.hostname || "127.0.0.1";

export const config = {
  /** The auth server: register, login, refresh (cookie), logout, sessions, password. */
  authUrl: `http://${host}:5000`,
  /** The articles API: `/me` and `/articles`, with the access token. */
  apiUrl: `http://${host}:4000`,
};
