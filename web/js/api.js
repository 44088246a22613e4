// HTTP for the two servers: JSON in and out, and the contract's errors as `ApiError`s that a
// person can read (`explain`).

/** An error answer of the contract (`{"error", "error_description"}`), or a network failure. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when there was no answer at all
   * @param {string} code the contract's `error` code (`network` when there was no answer)
   * @param {string} description the server's `error_description`
   * @param {number | null} retryAfter seconds from `Retry-After`, when sent
   */
  constructor(status, code, description, retryAfter = null) {
    super(`${code}: ${description}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.description = description;
    this.retryAfter = retryAfter;
  }
}

/**
 * One request. `token` adds `Authorization: Bearer`; `credentials: "include"` sends and
 * accepts cookies cross-origin (the auth server's refresh cookie). Resolves to the JSON body
 * (null for 204); rejects with an `ApiError`.
 */
export async function call(url, { method = "GET", body, token, credentials = "omit" } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials,
      cache: "no-store",
    });
  } catch {
    // A refused connection and a CORS refusal look the same to a page: a TypeError.
    throw new ApiError(0, "network", `no answer from ${new URL(url).origin}`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const retry = Number.parseInt(res.headers.get("Retry-After") ?? "", 10);
    throw new ApiError(
      res.status,
      data?.error ?? `http_${res.status}`,
      data?.error_description ?? res.statusText,
      Number.isFinite(retry) ? retry : null,
    );
  }
  return data;
}

/** What to tell a person about `err`. */
export function explain(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err?.message ?? err}`;
  const wait = err.retryAfter != null ? ` Try again in ${err.retryAfter} s.` : " Try again later.";
  switch (err.code) {
    case "network":
      return `Cannot reach the server (${err.description}). Is it running, and does it list ` +
        `this page's origin (${location.origin}) in its CORS origins?`;
    case "invalid_credentials":
      return "Wrong username or password.";
    case "username_taken":
      return "That username is taken; pick another one.";
    case "rate_limited":
      return `Too many attempts.${wait}`;
    case "unavailable":
      return `The service is unavailable right now.${wait}`;
    case "invalid_grant":
      return "Your session has ended; please log in again.";
    case "invalid_token":
      return "Your session has ended; please log in again.";
    case "forbidden":
      return `The auth server refused a request from this page's origin (${location.origin}).`;
    case "not_found":
      return "Not found (it may already be gone).";
    case "invalid_request":
      return err.description.charAt(0).toUpperCase() + err.description.slice(1) + ".";
    default:
      return `${err.description || "Unexpected error"} (${err.code}).`;
  }
}
