// Status: readiness (/readyz, open) and the service's /info (model, counts, store, index,
// limits), every field /info has shown as it comes, so fields added later appear too.

import { ApiError, probe, request } from "./api.js";
import { errorText, h, say } from "./dom.js";

const LABELS = {
  model: "Model",
  embedding_dim: "Embedding dimension",
  execution_providers: "Execution providers",
  device: "Device",
  items: "Items",
  images: "Images",
  index_items: "Items in the index",
  index_bytes: "Index bytes",
  store_backend: "Store backend",
  keep_blobs: "Original photos kept",
  index: "Index",
  attributes: "Attributes in memory",
  limits: "Limits",
};

const SUMMARY_LABELS = {
  model: "Model",
  items: "Items",
  images: "Images",
  store_backend: "Store backend",
  index: "Index",
  device: "Device",
};

/** What most visitors look for first: the model, the counts, where data lives. */
function summary(info) {
  const model = info.model || {};
  const name = [model.model_name, model.model_version].filter(Boolean).join(" ");
  const out = {
    model: name || "unknown",
    items: info.items,
    images: info.images,
    store_backend: info.store_backend,
    index: info.index && info.index.kind ? info.index.kind : "",
    device: info.device,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined && v !== ""));
}

function value(v) {
  if (Array.isArray(v)) return v.map(String).join(", ");
  if (v && typeof v === "object") return fields(v);
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

function fields(object, labels = {}) {
  return h(
    "dl",
    { class: "fields-list" },
    Object.entries(object).map(([key, v]) =>
      h("div", { dataset: { field: key } }, h("dt", {}, labels[key] || key.replaceAll("_", " ")), h("dd", {}, value(v))),
    ),
  );
}

export function renderStatus(root, scope) {
  const readiness = h("section", { class: "panel", id: "status-ready", "aria-label": "readiness" });
  const infoBox = h("section", { class: "panel", id: "status-info", "aria-label": "service information" });
  const message = h("p", { class: "message", role: "status", hidden: true });

  async function load() {
    const ready = await probe("readyz");
    if (!scope.alive) return;
    readiness.replaceChildren(
      h("h2", {}, "Readiness"),
      h("p", { class: `verdict ${ready.ok ? "yes" : "no"}`, dataset: { ready: String(ready.ok) } },
        ready.ok ? "Ready" : `Not ready: ${ready.detail}`),
    );
    try {
      const info = await request("GET", "info", { signal: scope.signal });
      infoBox.replaceChildren(
        h("h2", {}, "Service"),
        h("div", { id: "status-summary" }, fields(summary(info), SUMMARY_LABELS)),
        h("details", {}, h("summary", {}, "Everything /info reports"), fields(info, LABELS)),
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      infoBox.replaceChildren();
      say(message, errorText(err), "error");
      if (err instanceof ApiError && err.status === 401) document.getElementById("key-panel").open = true;
    }
  }

  root.append(
    h("h1", { tabindex: -1 }, "Status"),
    message,
    readiness,
    infoBox,
    h("button", { type: "button", id: "status-refresh", onclick: () => { say(message, ""); load(); } }, "Refresh"),
  );
  load();
}
