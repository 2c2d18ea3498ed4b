// Thin client for the JSON API (see docs/serve.md). Errors carry the server's one-line message.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function unwrap(resp) {
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || `${resp.status} ${resp.statusText}`);
  return data;
}

export async function get(path) {
  return unwrap(await fetch(path, { headers: { Accept: "application/json" } }));
}

export async function post(path, body) {
  return unwrap(await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  }));
}

export async function cancelJob(id) {
  return unwrap(await fetch(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE", headers: { Accept: "application/json" } }));
}

// Start a background job and poll it; onProgress(fraction, message, jobId) is called on each poll.
export async function job(kind, params, onProgress = () => {}) {
  return poll(await post("/api/jobs", { kind, params }), onProgress);
}

// Send a file as the raw request body (the Image tab); the answer is a job to poll, or the result.
export async function upload(path, file, type) {
  return unwrap(await fetch(path, {
    method: "POST",
    headers: { "Content-Type": type, Accept: "application/json" },
    body: file,
  }));
}

// Poll a started job until it ends; its result, or an ApiError with the job's message.
export async function poll(state, onProgress = () => {}) {
  let delay = 150;
  while (state.status === "queued" || state.status === "running") {
    onProgress(state.progress, state.message || state.status, state.id);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 1.5, 1000);
    state = await get(`/api/jobs/${state.id}`);
  }
  if (state.status === "error") throw new ApiError(state.error_status || 500, state.error);
  if (state.status === "cancelled") throw new ApiError(499, "cancelled");
  onProgress(1, "done");
  return state.result;
}
