// Small DOM helpers shared by the views: element building (text only, never HTML strings, so
// item ids and attributes cannot inject markup), messages, images behind the key, dialogs and
// drop zones.

import { ApiError, imageBlob } from "./api.js";

/** h("p", {class: "x"}, "text", child): an element; attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** The text of an error as the page shows it: the problem body's detail for API errors. */
export function errorText(err) {
  if (err instanceof ApiError) return err.status ? `${err.detail} (HTTP ${err.status})` : err.detail;
  return String(err && err.message ? err.message : err);
}

/** Show `text` in a message element; kind "error" | "ok" | "" . */
export function say(el, text, kind = "") {
  el.textContent = text;
  el.className = `message ${kind}`.trim();
  el.hidden = !text;
}

export function formatScore(value) {
  return typeof value === "number" ? value.toFixed(3) : String(value);
}

/** An item's attributes as key: value chips (nothing when it has none). */
export function attributeChips(attributes) {
  const entries = Object.entries(attributes || {});
  if (!entries.length) return null;
  return h(
    "ul",
    { class: "chips", "aria-label": "attributes" },
    entries.map(([key, value]) =>
      h("li", {}, h("span", { class: "chip-key" }, key), ": ", typeof value === "string" ? value : JSON.stringify(value)),
    ),
  );
}

/**
 * Owns what one rendering of a view fetched: images' blob URLs (revoked when the view goes) and
 * its requests (aborted), so leaving a view frees its memory and stops its downloads.
 */
export class ViewScope {
  constructor() {
    this.controller = new AbortController();
    this.urls = [];
  }

  get signal() {
    return this.controller.signal;
  }

  get alive() {
    return !this.controller.signal.aborted;
  }

  /** A blob URL that lives as long as this view. */
  adopt(blob) {
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    return url;
  }

  /** An <img> of an item's image, filled in once fetched with the key. */
  image(itemId, imageId, alt, { thumb = true } = {}) {
    const img = h("img", { alt, class: "thumb loading", dataset: { itemId, imageId } });
    imageBlob(itemId, imageId, { thumb, signal: this.signal })
      .then((blob) => {
        if (!this.alive) return;
        img.src = this.adopt(blob);
        img.classList.remove("loading");
      })
      .catch((err) => {
        if (err.name === "AbortError") return;
        img.classList.remove("loading");
        img.classList.add("failed");
        img.alt = `${alt} (not loaded: ${errorText(err)})`;
      });
    return img;
  }

  dispose() {
    this.controller.abort();
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }
}

/** Ask before a destructive action; resolves true when confirmed. */
export function confirmAction(text, confirmLabel = "Delete") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = confirmLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

/** Show an image full size in the viewer dialog. */
export function showViewer(title, img) {
  const dialog = document.getElementById("viewer");
  document.getElementById("viewer-title").textContent = title;
  document.getElementById("viewer-body").replaceChildren(img);
  dialog.showModal();
}

/**
 * A drop zone around a file input: choosing files (click, or Enter/Space on the focused input)
 * and dropping them both call onFiles(list of File).
 */
export function dropZone({ id, label, hint, multiple = true, accept, onFiles }) {
  const input = h("input", { type: "file", id, multiple, accept, class: "file-input" });
  const zone = h(
    "div",
    { class: "dropzone", dataset: { dropFor: id } },
    input,
    h("label", { for: id }, h("strong", {}, label), h("span", { class: "hint" }, hint)),
  );
  input.addEventListener("change", () => {
    if (input.files.length) onFiles([...input.files]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = [...(event.dataTransfer ? event.dataTransfer.files : [])];
    if (files.length) onFiles(files);
  });
  return zone;
}

/** Filters typed one `key:value` per line (or separated by ';' on one line). */
export function parseFilters(text) {
  return text
    .split(/\n|;/)
    .map((line) => line.trim())
    .filter(Boolean);
}
