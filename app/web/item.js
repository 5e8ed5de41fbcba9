// One item: its images (thumbnails, full size on demand), delete an image or the item (each
// confirmed), hold an image out of the centroid or count it again (quarantine), add photos,
// edit attributes (PATCH, RFC 7396 merge patch), similar items.

import { ApiError, request, segment } from "./api.js";
import { attributeChips, confirmAction, errorText, h, say, showViewer } from "./dom.js";
import { resultList } from "./results.js";

export function renderItem(root, scope, itemId) {
  const message = h("p", { class: "message", role: "status", hidden: true });
  const summary = h("p", { class: "summary", id: "item-summary" });
  const attributesBox = h("div", { class: "attributes" });
  const gallery = h("ul", { class: "gallery", "aria-label": "images" });
  const neighbours = h("section", { class: "results-box", "aria-label": "similar items" });
  const path = `items/${segment(itemId)}`;

  function fail(err) {
    if (err.name === "AbortError") return;
    say(message, errorText(err), "error");
    if (err instanceof ApiError && err.status === 401) document.getElementById("key-panel").open = true;
  }

  function showItem(item) {
    const heldOut = new Set(item.quarantined_image_ids || []);
    summary.textContent = `${item.image_count} image${item.image_count === 1 ? "" : "s"}` +
      (heldOut.size ? `, and ${heldOut.size} held out of the centroid` : "");
    summary.dataset.count = String(item.image_count);
    summary.dataset.quarantined = String(heldOut.size);
    attributesBox.replaceChildren(attributeChips(item.attributes) || h("p", { class: "hint" }, "No attributes."));
    gallery.replaceChildren(
      ...item.image_ids.map((imageId, i) =>
        h(
          "li",
          { class: heldOut.has(imageId) ? "card image quarantined" : "card image",
            dataset: { imageId, quarantined: String(heldOut.has(imageId)) } },
          h("button", { type: "button", class: "thumb-button", "aria-label": `show image ${i + 1} full size`,
            onclick: () => showViewer(`${itemId}: image ${imageId}`, scope.image(itemId, imageId, `image ${imageId} of ${itemId}, full size`, { thumb: false })) },
            scope.image(itemId, imageId, `image ${i + 1} of ${itemId}`)),
          h("code", { class: "image-id" }, imageId),
          heldOut.has(imageId) && h("span", { class: "badge" }, "held out of the centroid"),
          h("button", { type: "button", class: "quarantine",
            "aria-label": `${heldOut.has(imageId) ? "count again" : "hold out"} image ${i + 1} (${imageId})`,
            onclick: () => setQuarantine(imageId, !heldOut.has(imageId)) },
            heldOut.has(imageId) ? "Count again" : "Hold out"),
          h("button", { type: "button", class: "danger", "aria-label": `delete image ${i + 1} (${imageId})`,
            onclick: () => deleteImage(imageId) }, "Delete image"),
        ),
      ),
    );
  }

  async function load() {
    try {
      showItem(await request("GET", path, { signal: scope.signal }));
    } catch (err) {
      fail(err);
    }
  }

  async function deleteImage(imageId) {
    if (!(await confirmAction(`Delete image ${imageId} of ${itemId}? This cannot be undone.`, "Delete image"))) return;
    try {
      await request("DELETE", `${path}/images/${segment(imageId)}`, { signal: scope.signal });
      say(message, `Deleted image ${imageId}.`, "ok");
      await load();
      // The heading keeps focus in the view once the focused button is gone.
      root.querySelector("h1").focus();
    } catch (err) {
      fail(err);
    }
  }

  async function setQuarantine(imageId, quarantined) {
    try {
      await request("PATCH", `${path}/images/${segment(imageId)}`, {
        body: JSON.stringify({ quarantined }),
        headers: { "Content-Type": "application/json" },
        signal: scope.signal,
      });
      say(message, quarantined ? `Image ${imageId} held out of the centroid.` : `Image ${imageId} counted again.`, "ok");
      await load();
      root.querySelector("h1").focus();
    } catch (err) {
      fail(err);
    }
  }

  async function deleteItem() {
    if (!(await confirmAction(`Delete item ${itemId} and all its images? This cannot be undone.`, "Delete item"))) return;
    try {
      await request("DELETE", path, { signal: scope.signal });
      location.hash = "#/browse";
    } catch (err) {
      fail(err);
    }
  }

  async function findSimilar() {
    neighbours.replaceChildren(h("p", { class: "message" }, "Searching…"));
    try {
      const answer = await request("GET", `${path}/neighbours`, { params: [["k", "10"]], signal: scope.signal });
      neighbours.replaceChildren(h("h2", {}, "Similar items"), resultList(scope, answer.results, "similar items"));
    } catch (err) {
      neighbours.replaceChildren();
      fail(err);
    }
  }

  const patchText = h("textarea", { id: "item-patch", rows: 2, placeholder: '{"category": "shoe", "old_key": null}' });
  async function onPatch(event) {
    event.preventDefault();
    try {
      await request("PATCH", path, { body: patchText.value.trim() || "{}", headers: { "Content-Type": "application/merge-patch+json" }, signal: scope.signal });
      patchText.value = "";
      say(message, "Attributes updated.", "ok");
      await load();
    } catch (err) {
      fail(err);
    }
  }

  root.append(
    h("h1", { tabindex: -1 }, h("span", { class: "hint" }, "Item "), itemId),
    summary,
    attributesBox,
    h("div", { class: "row actions" },
      h("a", { class: "button", href: `#/enroll?item=${segment(itemId)}`, id: "item-add" }, "Add photos"),
      h("button", { type: "button", id: "item-similar", onclick: findSimilar }, "Find similar items"),
      h("button", { type: "button", class: "danger", id: "item-delete", onclick: deleteItem }, "Delete item")),
    message,
    gallery,
    h("form", { class: "panel", id: "item-patch-form", onsubmit: onPatch },
      h("label", { for: "item-patch" }, "Change attributes: a JSON merge patch (null deletes a key)"), patchText,
      h("button", { type: "submit" }, "Update attributes")),
    neighbours,
  );
  load();
}
