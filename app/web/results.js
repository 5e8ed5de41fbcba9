// A ranked answer (POST /search, GET /items/{id}/neighbours) as a list of cards. Every field
// beyond item_id and score is optional and shown when the service returns it: the evidence
// (best_image_id, image_score, image_count, centroid_score), the verdict (match, confidence)
// and the item's attributes.

import { request, segment } from "./api.js";
import { attributeChips, formatScore, h } from "./dom.js";

function verdict(result) {
  if (typeof result.match !== "boolean") return null;
  const confidence =
    typeof result.confidence === "number" ? ` (confidence ${formatScore(result.confidence)})` : "";
  return h(
    "p",
    { class: `verdict ${result.match ? "yes" : "no"}`, dataset: { match: String(result.match) } },
    result.match ? "Match" : "No match",
    confidence,
  );
}

function figures(result) {
  const rows = [["score", formatScore(result.score)]];
  if (typeof result.centroid_score === "number") rows.push(["centroid score", formatScore(result.centroid_score)]);
  if (typeof result.image_score === "number") rows.push(["best image score", formatScore(result.image_score)]);
  if (typeof result.image_count === "number") rows.push(["images", String(result.image_count)]);
  return h(
    "dl",
    { class: "figures" },
    rows.map(([name, value]) => h("div", { dataset: { figure: name } }, h("dt", {}, name), h("dd", {}, value))),
  );
}

/** The thumbnail: the best-matching gallery image when given, else the item's first image. */
function thumbnail(scope, result) {
  const holder = h("div", { class: "thumb-box" });
  const caption = h("p", { class: "caption" });
  if (result.best_image_id) {
    holder.append(scope.image(result.item_id, result.best_image_id, `best-matching image of ${result.item_id}`));
    caption.textContent = "best-matching gallery image";
  } else {
    request("GET", `items/${segment(result.item_id)}`, { signal: scope.signal })
      .then((item) => {
        if (!scope.alive || !item.image_ids.length) return;
        holder.append(scope.image(result.item_id, item.image_ids[0], `first gallery image of ${result.item_id}`));
        caption.textContent = "first gallery image";
      })
      .catch(() => {
        caption.textContent = "no image";
      });
  }
  return [holder, caption];
}

export function resultList(scope, results, label) {
  if (!results.length) return h("p", { class: "message" }, "No items found.");
  return h(
    "ol",
    { class: "results", "aria-label": label },
    results.map((result, i) =>
      h(
        "li",
        { class: "card result", dataset: { itemId: result.item_id, rank: String(i + 1) } },
        thumbnail(scope, result),
        h(
          "div",
          { class: "card-body" },
          h("p", { class: "card-title" }, h("span", { class: "rank" }, `${i + 1}.`), " ",
            h("a", { href: `#/items/${segment(result.item_id)}` }, result.item_id)),
          verdict(result),
          figures(result),
          attributeChips(result.attributes),
        ),
      ),
    ),
  );
}
