// Enroll: photos dropped or chosen are sent one file per request (an enrollment is
// all-or-nothing, so one bad file would otherwise reject its neighbours), each with its own
// progress bar and result: added, duplicate (`created` false) or rejected with the server's
// detail.

import { segment, upload } from "./api.js";
import { dropZone, errorText, h, say } from "./dom.js";

const ITEM_ID = /^(?!\.{1,2}$)[A-Za-z0-9._:-]{1,128}$/;

export function renderEnroll(root, scope, limits, params) {
  const itemInput = h("input", { id: "enroll-item", name: "item", required: true, autocomplete: "off", spellcheck: "false",
    pattern: "[A-Za-z0-9._:\\-]{1,128}", value: params.get("item") || "" });
  const attributes = h("textarea", { id: "enroll-attributes", name: "attributes", rows: 2, placeholder: '{"category": "shoe"}' });
  const queueList = h("ol", { class: "uploads", "aria-label": "uploads" });
  const message = h("p", { class: "message", role: "status", hidden: true });
  const itemLink = h("p", { class: "item-link", hidden: true });
  const submit = h("button", { type: "submit", id: "enroll-submit", disabled: true }, "Upload");
  const queue = [];
  let busy = false;

  function addFiles(files) {
    for (const file of files) {
      const progress = h("progress", { max: 1, value: 0, "aria-label": `upload of ${file.name}` });
      const status = h("span", { class: "upload-status" }, "queued");
      const row = h("li", { class: "upload", dataset: { file: file.name, state: "queued" } },
        h("span", { class: "name" }, file.name || "unnamed"), progress, status);
      queueList.append(row);
      queue.push({ file, row, progress, status });
    }
    submit.disabled = busy || !queue.length;
    say(message, `${queue.length} file${queue.length === 1 ? "" : "s"} queued.`);
  }

  function settle(entry, state, text) {
    entry.row.dataset.state = state;
    entry.status.textContent = text;
  }

  async function onSubmit(event) {
    event.preventDefault();
    const itemId = itemInput.value.trim();
    if (!ITEM_ID.test(itemId)) {
      say(message, "An item id is 1–128 of A–Z a–z 0–9 . _ : - (not '.' or '..').", "error");
      itemInput.focus();
      return;
    }
    const attributesText = attributes.value.trim();
    if (attributesText) {
      try {
        const parsed = JSON.parse(attributesText);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
      } catch {
        say(message, "Attributes must be a JSON object, e.g. {\"category\": \"shoe\"}.", "error");
        attributes.focus();
        return;
      }
    }
    busy = true;
    submit.disabled = true;
    const counts = { added: 0, duplicate: 0, rejected: 0 };
    while (queue.length) {
      const entry = queue.shift();
      settle(entry, "sending", "sending…");
      const form = new FormData();
      form.append("images", entry.file, entry.file.name || "photo");
      // Sent with every file: a merge of the same object changes nothing the second time, and
      // a rejected first file stores nothing, so the next one still carries the attributes.
      if (attributesText) form.append("attributes", attributesText);
      try {
        const { body } = await upload(`items/${segment(itemId)}/images`, form, {
          onProgress: (fraction) => { entry.progress.value = fraction; },
        });
        const imageId = body.image_ids[0];
        const pending = body.index_pending ? " (index update pending)" : "";
        if (body.created && body.created[0] === false) {
          counts.duplicate += 1;
          settle(entry, "duplicate", `duplicate: the item already holds it as image ${imageId}${pending}`);
        } else {
          counts.added += 1;
          settle(entry, "added", `added as image ${imageId}${pending}`);
        }
      } catch (err) {
        counts.rejected += 1;
        entry.progress.value = 0;
        settle(entry, "rejected", `rejected: ${errorText(err)}`);
      }
    }
    busy = false;
    const kind = counts.rejected ? "error" : "ok";
    say(message, `${counts.added} added, ${counts.duplicate} duplicate, ${counts.rejected} rejected.`, kind);
    itemLink.replaceChildren(h("a", { href: `#/items/${segment(itemId)}`, id: "enroll-open-item" }, `Open item ${itemId}`));
    itemLink.hidden = false;
    submit.disabled = !queue.length;
  }

  const maxBytes = limits.max_request_bytes;
  root.append(
    h("h1", { tabindex: -1 }, "Enroll photos"),
    h(
      "form",
      { class: "panel", id: "enroll-form", onsubmit: onSubmit },
      h(
        "div",
        { class: "fields" },
        h("label", { for: "enroll-item" }, "Item id (new or existing)"), itemInput,
        h("label", { for: "enroll-attributes" }, "Attributes, a JSON object merged into the item's (optional)"), attributes,
      ),
      dropZone({
        id: "enroll-files",
        label: "Drop gallery photos here, or choose files",
        hint: `Each file is uploaded in its own request${maxBytes ? ` (at most ${Math.floor(maxBytes / 1048576)} MiB)` : ""}.`,
        onFiles: addFiles,
      }),
      submit,
    ),
    message,
    queueList,
    itemLink,
  );
}
