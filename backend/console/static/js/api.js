// The console's only way to the service: the public REST API, with the visitor's key.
// The key lives in this tab's session storage and goes out as the X-API-Key header; only the
// event stream, which EventSource cannot give headers, carries it as the documented access_token.

const KEY_STORAGE = "mgx.console.apiKey";
export const API_ROOT = new URL("../", document.baseURI);

export class ApiError extends Error {
  constructor(status, title, detail, body = null) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.body = body;
  }
}

export const credentials = {
  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  },
};

export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), API_ROOT);
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

function authHeaders() {
  const key = credentials.key;
  return key ? { "X-API-Key": key } : {};
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    const body = await response.json().catch(() => null);
    if (body && (body.title || body.detail)) {
      return new ApiError(response.status, body.title || response.statusText, body.detail || "", body);
    }
  }
  return new ApiError(response.status, response.statusText || `HTTP ${response.status}`, "");
}

// One request; JSON in and out. Returns {data, response}; raises ApiError on a non-2xx answer.
export async function request(path, { method = "GET", query, body, headers = {}, accept = "application/json" } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path, query), {
      method,
      headers: {
        Accept: accept,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...authHeaders(),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch (error) {
    throw new ApiError(0, "The service cannot be reached", "check the network and that the API is running");
  }
  if (!response.ok) {
    const problem = await problemOf(response);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("console:unauthorized", { detail: problem }));
    throw problem;
  }
  if (response.status === 204) return { data: null, response };
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.blob();
  return { data, response };
}

export async function getJson(path, query) {
  return (await request(path, { query })).data;
}

export function eventStreamUrl(runId, after = 0) {
  return apiUrl(`runs/${runId}/events`, { after: after || null, access_token: credentials.key });
}

// Fetches with the key and saves the answer as a file (plain links cannot send a header).
export async function download(path, { accept = "*/*", filename } = {}) {
  const { data, response } = await request(path, { accept });
  const blob = data instanceof Blob ? data : new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const disposition = response.headers.get("content-disposition") || "";
  const named = /filename="([^"]+)"/.exec(disposition);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename || (named ? named[1] : path.split("/").pop());
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
