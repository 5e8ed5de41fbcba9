// Admin: the maintenance routes behind the `admin` scope (app/routes/admin.py): compaction
// (POST admin/compact?grace_s=, confirmed first: it removes files), an online backup
// (POST admin/backup?out=, the client names a directory under the service's backup root, never
// a path) and whether this replica's index agrees with the store (GET admin/index-digest).
// Each shows the answer's figures as they came, or the problem's detail (a key without the
// admin scope gets 403).

import { ApiError, request } from "./api.js";
import { confirmAction, errorText, h, say } from "./dom.js";

// The route's own default and floor (store/blob_sweep.py BLOB_SWEEP_GRACE_S, MIN_GRACE_S).
const DEFAULT_GRACE_S = 3600;
const MIN_GRACE_S = 60;

function text(v) {
  if (v === null || v === undefined) return "none";
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

/** "before → after" of two figures (either may be null: the store keeps no such file). */
function change(before, after) {
  return `${text(before)} → ${text(after)}`;
}

/** A <dl> of [field, label, value] rows; data-field names the answer's figure for tests. */
function figures(rows) {
  return h(
    "dl",
    { class: "fields-list" },
    rows.map(([field, label, v]) =>
      h("div", { dataset: { field } }, h("dt", {}, label), h("dd", {}, v instanceof Node ? v : text(v)))),
  );
}

function compactFigures(answer) {
  const rows = [
    ["backend", "Store backend", answer.backend],
    ["store_bytes", "Store bytes (before → after)", change(answer.store_bytes_before, answer.store_bytes_after)],
  ];
  const blobs = answer.blobs;
  if (blobs) {
    rows.push(
      ["blob_files", "Blob files (before → after)", change(blobs.files_before, blobs.files_after)],
      ["blob_dirs", "Blob directories (before → after)", change(blobs.dirs_before, blobs.dirs_after)],
      ["orphans_removed", "Orphan blobs removed", blobs.orphans_removed],
      ["thumbnails_removed", "Orphan thumbnails removed", blobs.thumbnails_removed],
      ["temporary_removed", "Temporary files removed", blobs.temporary_removed],
      ["kept_recent", "Unreferenced, kept (younger than the grace period)", blobs.kept_recent],
      ["held", "Held by a backup (nothing removed)", blobs.held],
    );
  } else {
    rows.push(["blob_files", "Blob files", "not kept by this service"]);
  }
  rows.push(["seconds", "Seconds", answer.seconds]);
  return figures(rows);
}

function backupFigures(answer) {
  const rows = [
    ["out", "Directory under the backup root", h("code", {}, answer.out)],
    ["backend", "Store backend", answer.backend],
    ["created_at", "Created at", answer.created_at],
    ["items", "Items", answer.items],
    ["images", "Images", answer.images],
    ["blobs_kept", "Original photos kept", answer.blobs_kept],
    ["referenced_hashes", "Photos referenced", answer.referenced_hashes],
    ["blobs_copied", "Photos copied", answer.blobs_copied],
    ["thumbnails_copied", "Thumbnails copied", answer.thumbnails_copied],
    ["missing_blobs", "Photos already missing from the store", answer.missing_blobs],
    ["deferred_deletes", "Deletions deferred during the backup", answer.deferred_deletes],
    ["deferred_removed", "Deferred deletions done after it", answer.deferred_removed],
    ["seconds", "Seconds", answer.seconds],
  ];
  const box = [figures(rows)];
  if (answer.missing_listed && answer.missing_listed.length) {
    box.push(h("details", {}, h("summary", {}, `Missing photos (the first ${answer.missing_listed.length})`),
      h("ul", { class: "hash-list" }, answer.missing_listed.map((hash) => h("li", {}, h("code", {}, hash))))));
  }
  return box;
}

function digestFigures(answer) {
  return [
    h("p", { class: `verdict ${answer.agrees ? "yes" : "no"}`, dataset: { agrees: String(answer.agrees) } },
      answer.agrees ? "The index agrees with the store." : "The index does not agree with the store."),
    figures([
      ["index_items", "Items in the index", answer.index_items],
      ["store_items", "Items in the store", answer.store_items],
      ["index_digest", "Index digest", h("code", {}, answer.index_digest)],
      ["store_digest", "Store digest", h("code", {}, answer.store_digest)],
    ]),
  ];
}

/**
 * One maintenance action's panel: a form whose submit runs `act` (null: cancelled) with its
 * button disabled meanwhile, then shows `show(answer)` or the problem's detail.
 */
function actionPanel(scope, { id, title, hint, fields = [], submitLabel, busyLabel, act, show }) {
  const message = h("p", { class: "message", role: "status", hidden: true, id: `${id}-message` });
  const result = h("div", { class: "admin-result", id: `${id}-result`, "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: `${id}-submit` }, submitLabel);

  async function onSubmit(event) {
    event.preventDefault();
    submit.disabled = true;
    say(message, "");
    try {
      const pending = act();
      if (!pending) return;
      say(message, busyLabel);
      const answer = await pending;
      if (!scope.alive) return;
      say(message, "");
      result.replaceChildren(...[show(answer)].flat());
    } catch (err) {
      if (err.name === "AbortError") return;
      result.replaceChildren();
      say(message, errorText(err), "error");
      if (err instanceof ApiError && err.status === 401) document.getElementById("key-panel").open = true;
    } finally {
      submit.disabled = false;
    }
  }

  return h(
    "section",
    { class: "panel admin-panel", id, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title),
    h("p", { class: "hint" }, hint),
    h("form", { class: "admin-form", id: `${id}-form`, onsubmit: onSubmit },
      fields.length ? h("div", { class: "fields" }, fields) : null, submit),
    message,
    result,
  );
}

export function renderAdmin(root, scope) {
  const grace = h("input", { id: "admin-grace", type: "number", min: MIN_GRACE_S, step: "any", required: true,
    value: DEFAULT_GRACE_S, inputmode: "decimal" });
  const backupName = h("input", { id: "admin-backup-name", autocomplete: "off", spellcheck: "false",
    placeholder: "backup-<UTC time>" });

  const compact = actionPanel(scope, {
    id: "admin-compact",
    title: "Compaction",
    hint: "Removes original photos no image references and temporary files older than the grace period, then compacts the store (SQLite: VACUUM and a truncated WAL, writes wait meanwhile; Redis: an append-only file rewrite).",
    fields: [h("label", { for: "admin-grace" }, `Grace period, seconds (at least ${MIN_GRACE_S})`), grace],
    submitLabel: "Run compaction",
    busyLabel: "Compacting…",
    act: () => {
      const seconds = grace.value.trim();
      return confirmAction(
        `Compact the store and remove unreferenced photos older than ${seconds} s? Removed files cannot be restored.`,
        "Run compaction",
      ).then((ok) => (ok ? request("POST", "admin/compact", { params: [["grace_s", seconds]], signal: scope.signal }) : null));
    },
    show: compactFigures,
  });

  const backup = actionPanel(scope, {
    id: "admin-backup",
    title: "Backup",
    hint: "An online, consistent backup into a new directory under the service's backup root (RETRIEVAL_BACKUP_DIR, default <data dir>/backups); the service keeps serving and writing. The name is one path component of A–Z a–z 0–9 . _ - ; empty: backup-<UTC time>.",
    fields: [h("label", { for: "admin-backup-name" }, "Directory name (optional)"), backupName],
    submitLabel: "Write backup",
    busyLabel: "Writing the backup…",
    act: () => request("POST", "admin/backup", { params: [["out", backupName.value.trim()]], signal: scope.signal }),
    show: backupFigures,
  });

  const digest = actionPanel(scope, {
    id: "admin-digest",
    title: "Index digest",
    hint: "Whether this replica's index holds exactly the store's items and versions (reads every item of the store).",
    submitLabel: "Check the index",
    busyLabel: "Reading the index and the store…",
    act: () => request("GET", "admin/index-digest", { signal: scope.signal }),
    show: digestFigures,
  });

  root.append(
    h("h1", { tabindex: -1 }, "Admin"),
    h("p", { class: "hint" }, "Maintenance: these need a key with the admin scope. Restoring a backup stays a command, run with the service stopped."),
    compact,
    backup,
    digest,
  );
}
