// @ts-check
// HTTP calls to the node. A call resolves with the status and body whatever the status, and
// rejects only when the server cannot be reached: callers tell "refused" from "unreachable".

/** @typedef {import('./protocol.js').Account} Account */
/** @typedef {import('./protocol.js').ApiErrorBody} ApiErrorBody */
/** @typedef {import('./protocol.js').Credentials} Credentials */

/**
 * The status and parsed body (null when not JSON): T on success, else an error body.
 * @template T
 * @typedef {{ status: number, ok: true, data: T }
 *   | { status: number, ok: false, data: ApiErrorBody | null }} ApiResult
 */

/**
 * @template T
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<ApiResult<T>>}
 */
async function request(method, path, body) {
  /** @type {RequestInit & { headers: Record<string, string> }} */
  const options = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  return /** @type {ApiResult<T>} */ ({ status: response.status, ok: response.ok, data });
}

/** @returns {Promise<ApiResult<Account>>} */
export const getMe = () => request("GET", "/api/me");

/**
 * @param {Credentials} credentials
 * @returns {Promise<ApiResult<Account>>}
 */
export const register = (credentials) => request("POST", "/api/register", credentials);

/**
 * @param {Credentials} credentials
 * @returns {Promise<ApiResult<Account>>}
 */
export const login = (credentials) => request("POST", "/api/login", credentials);

/** @returns {Promise<ApiResult<null>>} 204, no body */
export const logout = () => request("POST", "/api/logout");
