// Search: one photo, or several as a set query (items ranked by the weighted centroid of the
// query embeddings), with k, min_score and attribute filters.

import { ApiError, request } from "./api.js";
import { dropZone, errorText, h, parseFilters, say } from "./dom.js";
import { resultList } from "./results.js";

// The query set survives leaving and coming back to the view (not a reload).
let queryFiles = [];

export function renderSearch(root, scope, limits) {
  const maxK = limits.max_k || 100;
  const maxFiles = limits.max_images_per_request || 64;
  const previews = h("ul", { class: "query-list", "aria-label": "query photos" });
  const message = h("p", { class: "message", role: "status", hidden: true });
  const results = h("section", { class: "results-box", "aria-label": "results" });
  const k = h("input", { type: "number", id: "search-k", name: "k", min: 1, max: maxK, value: Math.min(limits.default_k || 10, maxK), required: true });
  const minScore = h("input", { type: "number", id: "search-min-score", name: "min_score", min: -1, max: 1, step: "any" });
  const filters = h("textarea", { id: "search-filters", name: "filters", rows: 2, placeholder: "category:shoe" });
  const submit = h("button", { type: "submit", id: "search-submit" }, "Search");

  function showQueries() {
    const set = queryFiles.length > 1;
    previews.replaceChildren(
      ...queryFiles.map((entry, i) =>
        h(
          "li",
          { class: "query" },
          h("img", { src: scope.adopt(entry.file), alt: `query photo ${i + 1}: ${entry.file.name || "unnamed"}`, class: "thumb" }),
          h("span", { class: "name" }, entry.file.name || `photo ${i + 1}`),
          set
            ? h("label", { class: "weight" }, "weight ",
                h("input", { type: "number", min: 0, step: "any", value: entry.weight, "aria-label": `weight of query photo ${i + 1}`,
                  oninput: (e) => { entry.weight = e.target.value; } }))
            : null,
          h("button", { type: "button", class: "link", "aria-label": `remove query photo ${i + 1}`,
            onclick: () => { queryFiles.splice(i, 1); showQueries(); } }, "Remove"),
        ),
      ),
    );
    submit.disabled = !queryFiles.length;
  }

  const zone = dropZone({
    id: "search-files",
    label: "Drop query photos here, or choose files",
    hint: `One photo, or up to ${maxFiles} of the same thing for a set query.`,
    accept: "image/*",
    onFiles: (files) => {
      queryFiles = files.slice(0, maxFiles).map((file) => ({ file, weight: "1" }));
      if (files.length > maxFiles) say(message, `Only the first ${maxFiles} files are used (the service's limit).`, "error");
      else say(message, "");
      showQueries();
    },
  });

  async function onSubmit(event) {
    event.preventDefault();
    if (!queryFiles.length) return;
    const form = new FormData();
    for (const entry of queryFiles) form.append("images", entry.file, entry.file.name || "query");
    if (queryFiles.length > 1 && queryFiles.some((entry) => String(entry.weight).trim() !== "1")) {
      form.append("weights", queryFiles.map((entry) => String(entry.weight).trim() || "0").join(","));
    }
    const params = [["k", k.value], ["min_score", minScore.value.trim()]];
    for (const spec of parseFilters(filters.value)) params.push(["filter", spec]);
    submit.disabled = true;
    say(message, "Searching…");
    results.replaceChildren();
    try {
      const answer = await request("POST", "search", { params, body: form, signal: scope.signal });
      say(message, `${answer.results.length} result${answer.results.length === 1 ? "" : "s"}.`, "ok");
      results.replaceChildren(h("h2", {}, "Results"), resultList(scope, answer.results, "search results"));
    } catch (err) {
      if (err.name === "AbortError") return;
      say(message, errorText(err), "error");
      if (err instanceof ApiError && err.status === 401) document.getElementById("key-panel").open = true;
    } finally {
      submit.disabled = !queryFiles.length;
    }
  }

  root.append(
    h("h1", { tabindex: -1 }, "Search by photo"),
    h(
      "form",
      { class: "panel", id: "search-form", onsubmit: onSubmit },
      zone,
      previews,
      h(
        "div",
        { class: "fields" },
        h("label", { for: "search-k" }, `Results (k, 1–${maxK})`), k,
        h("label", { for: "search-min-score" }, "Minimum score (optional)"), minScore,
        h("label", { for: "search-filters" }, "Attribute filters, key:value, one per line (all must hold)"), filters,
      ),
      submit,
    ),
    message,
    results,
  );
  showQueries();
}
