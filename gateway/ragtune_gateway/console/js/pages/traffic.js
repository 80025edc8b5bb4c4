// Traffic: the tenant's stored chat completions, filtered by model, metadata, rating and time;
// one opened whole (messages, answer, citations, feedback history), rated good or bad and its answer
// corrected through the OpenAI metadata update (POST /v1/chat/completions/{id}).

import { api, modelGroups } from "../api.js";
import { append, errorText, field, h, replace, table, when } from "../dom.js";
import { showCompletion } from "./traffic_detail.js";

const PAGE = 50; // completions asked for at a time
const SHOWN = 20; // rows added per "More"

/** "topic=leave, lang=en" as {topic: "leave", lang: "en"}; throws on a pair without "=". */
export function parsePairs(text) {
  const pairs = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at <= 0) throw new Error(`Metadata filters are key=value, not "${part}".`);
    pairs[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return pairs;
}

/** A datetime-local input's value as Unix seconds (null when empty). */
function seconds(input) {
  return input.value ? Math.floor(new Date(input.value).getTime() / 1000) : null;
}

/** The filter the form describes: what the list route takes (model, metadata; feedback good/bad is
 *  metadata too) and what the page checks itself (unrated, the time range: the route has no time filter). */
export function readFilter(controls) {
  const metadata = parsePairs(controls.metadata.value);
  const rating = controls.feedback.value;
  if (rating === "good" || rating === "bad") metadata.feedback = rating;
  return { model: controls.model.value.trim(), metadata, unrated: rating === "none", since: seconds(controls.from), until: seconds(controls.to) };
}

function listPath(filter, cursor) {
  const query = [`order=desc`, `limit=${PAGE}`];
  if (filter.model) query.push(`model=${encodeURIComponent(filter.model)}`);
  for (const [k, v] of Object.entries(filter.metadata)) query.push(`metadata[${encodeURIComponent(k)}]=${encodeURIComponent(v)}`);
  if (cursor) query.push(`after=${encodeURIComponent(cursor)}`);
  return `/v1/chat/completions?${query.join("&")}`;
}

/** Newest first: pages of the route until ``want`` more completions passed the page's own checks
 *  or none is left (or they are older than the range). ``scan`` keeps the cursor between calls. */
async function more(filter, scan, want) {
  const found = [];
  while (found.length < want && !scan.done) {
    const page = await api("GET", listPath(filter, scan.cursor));
    for (const c of page.data) {
      if (filter.since !== null && c.created < filter.since) { scan.done = true; break; }
      if (filter.until !== null && c.created >= filter.until) continue;
      if (filter.unrated && c.metadata.feedback) continue;
      found.push(c);
    }
    scan.cursor = page.last_id;
    if (!page.has_more || !page.data.length) scan.done = true;
  }
  return found;
}

/** What was asked: the request's last user message. */
async function question(id) {
  const page = await api("GET", `/v1/chat/completions/${encodeURIComponent(id)}/messages?order=desc&limit=5`);
  const user = page.data.find((m) => m.role === "user");
  return user ? user.content || "" : "";
}

function preview(text, chars) {
  const flat = (text || "").split(/\s+/).join(" ").trim();
  return flat.length <= chars ? flat : `${flat.slice(0, chars - 1)}…`;
}

export function rating(c) {
  const fb = c.metadata.feedback;
  return h("span", { class: `rating ${fb || "none"}`, "data-rating": fb || "none" }, fb || "–", c.correction ? " ✎" : "");
}

export function render(view) {
  const filterCard = h("div", { class: "card" });
  const listCard = h("div", { class: "card", id: "tr-list" }, h("p", { class: "muted" }, "Loading…"));
  const detail = h("div", { id: "tr-detail" }, h("div", { class: "card" }, h("p", { class: "muted" }, "Choose a completion to read, rate or correct it.")));
  const loop = h("div", { id: "tr-loop" });
  append(view, h("h1", {}, "Traffic"), h("div", { class: "grid wide" }, h("div", {}, filterCard, listCard), detail), loop);
  let rows = [];
  const questions = new Map();
  let selected = null;
  let scan = null;
  let filter = null;

  const models = h("datalist", { id: "tr-models" });
  const form = h("form", { id: "tr-filter", onsubmit: (e) => { e.preventDefault(); search(); } });
  const controls = {
    model: h("input", { type: "text", id: "tr-model", name: "model", list: "tr-models", placeholder: "any model, adapter or alias" }),
    metadata: h("input", { type: "text", id: "tr-metadata", name: "metadata", placeholder: "key=value, key=value" }),
    feedback: h("select", { id: "tr-feedback", name: "feedback" }, [["", "any"], ["good", "good"], ["bad", "bad"], ["none", "not rated"]].map(([v, t]) => h("option", { value: v }, t))),
    from: h("input", { type: "datetime-local", id: "tr-from", name: "from" }),
    to: h("input", { type: "datetime-local", id: "tr-to", name: "to" }),
  };
  const formError = h("div");
  append(form, models, field("Model", controls.model), field("Metadata", controls.metadata), field("Rating", controls.feedback),
    h("div", { class: "cols2" }, h("div", {}, field("From", controls.from)), h("div", {}, field("Until", controls.to))),
    h("div", { class: "row" }, h("button", { type: "submit", id: "tr-search" }, "Filter"),
      h("button", { type: "button", class: "secondary", onclick: () => { form.reset(); search(); } }, "Clear")), formError);
  append(filterCard, h("h2", {}, "Stored completions"), form);
  modelGroups().then((g) => replace(models, [...g.base, ...g.adapters, ...g.aliases].map((m) => h("option", { value: m.id })))).catch(() => {});

  async function search() {
    replace(formError);
    try { filter = readFilter(controls); } catch (err) { replace(formError, errorText(err)); return; }
    scan = { cursor: "", done: false };
    rows = [];
    listCard.dataset.state = "loading";
    await load();
  }

  async function load() {
    listCard.dataset.state = "loading";
    try {
      const found = await more(filter, scan, SHOWN);
      const asked = await Promise.all(found.map((c) => question(c.id).catch(() => "")));
      found.forEach((c, i) => questions.set(c.id, asked[i]));
      rows = rows.concat(found);
      drawList();
    } catch (err) { replace(listCard, errorText(err)); }
    listCard.dataset.state = "ready";
  }

  function drawList() {
    const listed = rows.length ? table([
      ["When", (c) => when(c.created)],
      ["Model", (c) => h("span", { class: "mono" }, c.model)],
      ["Question", (c) => preview(questions.get(c.id), 60)],
      ["Answer", (c) => preview(c.choices.length ? c.choices[0].message.content : "", 60)],
      ["Rating", rating],
    ], rows, { onRow: (c) => open(c.id), selected, key: (c) => c.id }) : h("p", { class: "muted", id: "tr-empty" }, "No stored completion matches. Requests with store: true (or a tenant with store_completions on) are kept.");
    const moreButton = scan.done ? null : h("button", { type: "button", class: "secondary", id: "tr-more", onclick: load }, "More");
    replace(listCard, h("p", { class: "muted", id: "tr-count" }, `${rows.length} shown${scan.done ? "" : ", more older ones"}`), listed, h("div", { class: "row" }, moreButton));
  }

  async function open(id) {
    selected = id;
    drawList();
    await showCompletion(detail, id, {
      changed: (c) => { rows = rows.map((r) => (r.id === c.id ? c : r)); drawList(); },
      deleted: (gone) => { rows = rows.filter((r) => r.id !== gone); selected = null; drawList(); },
    });
  }

  search();
  return null;
}
