// The page's entry point: the key panel, and a hash router over the views (#/search,
// #/enroll, #/browse, #/items/<id>, #/status, #/admin). Plain ES modules, no framework and no
// build step: the page is a few forms and lists over the public API, which the DOM does
// directly, and nothing has to be installed or compiled to serve it.

import { getKey, info, setKey } from "./api.js";
import { renderAdmin } from "./admin.js";
import { ViewScope } from "./dom.js";
import { renderBrowse } from "./browse.js";
import { renderEnroll } from "./enroll.js";
import { renderItem } from "./item.js";
import { renderSearch } from "./search.js";
import { renderStatus } from "./status.js";

let scope = null;
// The service's limits from /info (k, files per request, bytes), when it could be read.
let limits = {};

async function loadLimits() {
  const answer = await info();
  limits = answer && answer.limits ? answer.limits : {};
}

function showKeyState() {
  const key = getKey();
  document.getElementById("key-summary").textContent = key ? "API key: set for this session" : "API key: none";
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function route() {
  const { parts, params } = parseHash();
  const view = parts[0] || "search";
  if (scope) scope.dispose();
  scope = new ViewScope();
  const root = document.getElementById("view");
  root.replaceChildren();
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    const current = link.dataset.view === view || (view === "items" && link.dataset.view === "browse");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  switch (view) {
    case "enroll":
      renderEnroll(root, scope, limits, params);
      break;
    case "browse":
      renderBrowse(root, scope);
      break;
    case "items":
      renderItem(root, scope, parts.slice(1).join("/"));
      break;
    case "status":
      renderStatus(root, scope);
      break;
    case "admin":
      renderAdmin(root, scope);
      break;
    default:
      renderSearch(root, scope, limits);
  }
  document.body.dataset.view = view;
  const heading = root.querySelector("h1");
  document.title = `${heading ? heading.textContent : "Centroid retrieval"} · Centroid retrieval`;
  // A keyboard user lands on the new view, not back at the top of the page.
  if (route.navigated && heading) heading.focus();
  route.navigated = true;
}

function setUpKeyPanel() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    input.value = "";
    showKeyState();
    document.getElementById("key-panel").open = false;
    await loadLimits();
    route();
  });
  document.getElementById("key-forget").addEventListener("click", async () => {
    setKey("");
    showKeyState();
    await loadLimits();
    route();
  });
  showKeyState();
}

async function start() {
  setUpKeyPanel();
  await loadLimits();
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "true";
}

start();
