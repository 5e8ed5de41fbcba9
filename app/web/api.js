// The service's public HTTP API as the page uses it: the session's API key, JSON requests,
// RFC 9457 problem details as errors, images as blobs, uploads with progress.
//
// Every path is relative to the page (no leading "/"), so the page works behind a proxy that
// serves the service under a path prefix.

const KEY_STORAGE = "centroid-retrieval.api-key";

/** An answer that is not a 2xx, or no answer: `detail` is the problem body's text. */
export class ApiError extends Error {
  constructor(status, detail, body = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** The headers that carry the key: `Authorization: Bearer` (app/authorization.py). */
export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** A URL of the API; `params` is a list of [name, value] pairs (names may repeat). */
export function apiUrl(path, params = []) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of params) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.append(name, value);
  }
  return url.toString();
}

/** The URL path segment of an id: item ids may hold ':' and '.', which are kept readable. */
export function segment(id) {
  return encodeURIComponent(id);
}

function detailOf(status, statusText, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.detail === "string" && body.detail) return [body.detail, body];
    if (body && typeof body.title === "string" && body.title) return [body.title, body];
    return [`${status} ${statusText}`.trim(), body];
  } catch {
    return [`${status} ${statusText}`.trim() || "no answer", null];
  }
}

async function send(method, path, { params = [], body, headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path, params), {
      method,
      body,
      signal,
      headers: { Accept: "application/json", ...authHeaders(), ...headers },
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "the service did not answer (network error)");
  }
  if (!response.ok) {
    const [detail, problem] = detailOf(response.status, response.statusText, await response.text());
    throw new ApiError(response.status, detail, problem);
  }
  return response;
}

/** JSON of a 2xx answer (null for 204); throws ApiError with the problem's detail. */
export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  if (response.status === 204) return null;
  return response.json();
}

/** The answer of an open route whatever its status (e.g. /readyz: 503 holds a problem). */
export async function probe(path) {
  try {
    const response = await fetch(apiUrl(path), { headers: { Accept: "application/json" } });
    const text = await response.text();
    const [detail, body] = response.ok ? [null, JSON.parse(text)] : detailOf(response.status, response.statusText, text);
    return { status: response.status, ok: response.ok, body, detail };
  } catch {
    return { status: 0, ok: false, body: null, detail: "the service did not answer (network error)" };
  }
}

/** An image of an item as a Blob, fetched with the key (an <img src> cannot send one). */
export async function imageBlob(itemId, imageId, { thumb = true, signal } = {}) {
  const params = thumb ? [["size", "thumb"]] : [];
  const path = `items/${segment(itemId)}/images/${segment(imageId)}`;
  const response = await send("GET", path, { params, signal, headers: { Accept: "image/*" } });
  return response.blob();
}

/**
 * POST a multipart form with XMLHttpRequest, since fetch reports no upload progress.
 * Resolves to {status, body}; rejects with ApiError (the problem's detail) for a non-2xx.
 */
export function upload(path, form, { params = [], onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl(path, params));
    xhr.setRequestHeader("Accept", "application/json");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        if (onProgress) onProgress(1);
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        resolve({ status: xhr.status, body });
      } else {
        const [detail, problem] = detailOf(xhr.status, xhr.statusText, xhr.responseText);
        reject(new ApiError(xhr.status, detail, problem));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "the service did not answer (network error)"));
    xhr.send(form);
  });
}

/** The service's /info (limits, counts), or null when it cannot be read (e.g. no key yet). */
export async function info() {
  try {
    return await request("GET", "info");
  } catch (err) {
    if (err instanceof ApiError) return null;
    throw err;
  }
}
