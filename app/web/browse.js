// Browse: GET /items page by page (the service's cursor), with the same attribute filters as
// search.

import { ApiError, request, segment } from "./api.js";
import { attributeChips, errorText, h, parseFilters, say } from "./dom.js";

const PAGE_SIZES = [10, 20, 50, 100];
// Cursors of the pages seen so far (index 0: the first page), kept while the page is open so
// that "Previous" goes back without the service having to page backwards.
let pages = [null];
let pageIndex = 0;
let filterText = "";
let pageSize = PAGE_SIZES[0];

export function renderBrowse(root, scope) {
  const message = h("p", { class: "message", role: "status", hidden: true });
  const list = h("ul", { class: "item-list", "aria-label": "items" });
  const pageLabel = h("p", { class: "page-label" });
  const previous = h("button", { type: "button", id: "browse-previous" }, "Previous page");
  const next = h("button", { type: "button", id: "browse-next" }, "Next page");
  const filters = h("textarea", { id: "browse-filters", rows: 2, placeholder: "category:shoe" });
  filters.value = filterText;
  const size = h("select", { id: "browse-size" }, PAGE_SIZES.map((n) => h("option", { value: n, selected: n === pageSize }, String(n))));

  async function load() {
    previous.disabled = true;
    next.disabled = true;
    list.setAttribute("aria-busy", "true");
    say(message, "Loading…");
    const params = [["limit", String(pageSize)], ["cursor", pages[pageIndex]]];
    for (const spec of parseFilters(filterText)) params.push(["filter", spec]);
    try {
      const answer = await request("GET", "items", { params, signal: scope.signal });
      list.replaceChildren(
        ...answer.items.map((item) =>
          h(
            "li",
            { class: "card item-row", dataset: { itemId: item.item_id } },
            h("a", { href: `#/items/${segment(item.item_id)}`, class: "card-title" }, item.item_id),
            h("span", { class: "count", dataset: { count: String(item.image_count) } },
              `${item.image_count} image${item.image_count === 1 ? "" : "s"}`),
            attributeChips(item.attributes),
          ),
        ),
      );
      pages = pages.slice(0, pageIndex + 1);
      if (answer.next_cursor) pages.push(answer.next_cursor);
      pageLabel.textContent = `Page ${pageIndex + 1}`;
      say(message, answer.items.length ? "" : "No items.");
      previous.disabled = pageIndex === 0;
      next.disabled = !answer.next_cursor;
    } catch (err) {
      if (err.name === "AbortError") return;
      say(message, errorText(err), "error");
      if (err instanceof ApiError && err.status === 401) document.getElementById("key-panel").open = true;
      previous.disabled = pageIndex === 0;
    } finally {
      list.removeAttribute("aria-busy");
    }
  }

  previous.addEventListener("click", () => { pageIndex = Math.max(0, pageIndex - 1); load(); });
  next.addEventListener("click", () => { if (pageIndex + 1 < pages.length) { pageIndex += 1; load(); } });

  root.append(
    h("h1", { tabindex: -1 }, "Items"),
    h(
      "form",
      { class: "panel", id: "browse-form", onsubmit: (event) => {
        event.preventDefault();
        filterText = filters.value;
        pageSize = Number(size.value);
        pages = [null];
        pageIndex = 0;
        load();
      } },
      h("div", { class: "fields" },
        h("label", { for: "browse-filters" }, "Attribute filters, key:value, one per line"), filters,
        h("label", { for: "browse-size" }, "Items per page"), size),
      h("button", { type: "submit" }, "Apply"),
    ),
    message,
    list,
    h("nav", { class: "row pager", "aria-label": "pages" }, previous, pageLabel, next),
  );
  load();
}
