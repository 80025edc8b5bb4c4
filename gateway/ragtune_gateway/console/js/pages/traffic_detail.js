// One stored chat completion: the messages sent, the answer with its citations, its metadata, the
// rating and correction controls (OpenAI's metadata update, which replaces the metadata: the other
// keys are sent back as they were), the feedback history (who and when), and deletion.

import { api, path } from "../api.js";
import { append, errorText, field, h, replace, table, when } from "../dom.js";

const MAX_METADATA_VALUE = 512; // a longer correction goes in ragtune's `correction` field
const MAX_CORRECTION = 32768;

function completionPath(id, ...rest) {
  return path("/v1/chat/completions", id, ...rest);
}

/** The update body that sets (or, with "", clears) the correction and keeps the other metadata. */
export function correctionBody(completion, text) {
  const metadata = { ...completion.metadata };
  delete metadata.correction;
  if (!text) return { metadata, correction: null };
  if (text.length <= MAX_METADATA_VALUE) return { metadata: { ...metadata, correction: text } };
  return { metadata, correction: text };
}

function messageBlock(m) {
  return h("div", { class: `message ${m.role}` }, h("div", { class: "meta" }, m.role + (m.name ? ` (${m.name})` : "")), h("div", { class: "text" }, m.content || ""));
}

function citationList(citations) {
  if (!citations || !citations.length) return null;
  return h("ol", { class: "citations", id: "tr-citations" }, citations.map((c) => h("li", {},
    h("strong", {}, `[${c.index}] ${c.filename || c.document_id}`),
    h("span", { class: "muted" }, ` characters ${c.start_offset}–${c.end_offset}, score ${c.score.toFixed(3)}`),
    h("div", { class: "quote" }, c.text))));
}

function history(updates) {
  if (!updates.length) return h("p", { class: "muted" }, "No feedback yet.");
  return table([
    ["When", (u) => when(u.created_at)],
    ["Key", (u) => h("span", { class: "mono" }, u.api_key_id || "admin")],
    ["Rating", (u) => u.feedback || "–"],
    ["Correction", (u) => u.correction || ""],
  ], updates);
}

/** Draw completion ``id`` into ``detail`` (``refresh``: redraw the one shown, without "Loading…");
 *  ``on.changed(completion)`` after an update, ``on.deleted(id)`` after deletion. */
export async function showCompletion(detail, id, on, { refresh = false } = {}) {
  if (!refresh) replace(detail, h("div", { class: "card" }, h("p", { class: "muted" }, "Loading…")));
  let completion, messages, updates;
  try {
    [completion, messages, updates] = await Promise.all([
      api("GET", completionPath(id)),
      api("GET", `${completionPath(id, "messages")}?limit=100`),
      api("GET", completionPath(id, "feedback")),
    ]);
  } catch (err) {
    replace(detail, h("div", { class: "card" }, errorText(err)));
    return;
  }
  const outcome = h("div", { id: "tr-outcome" });

  async function send(body, done) {
    replace(outcome);
    try {
      const updated = await api("POST", completionPath(id), body);
      on.changed(updated);
      await showCompletion(detail, id, on, { refresh: true }); // redrawn in place, no "Loading…" flash
      append(detail.querySelector("#tr-outcome"), h("p", { class: "muted" }, done));
    } catch (err) { replace(outcome, errorText(err)); }
  }

  const current = completion.metadata.feedback || "";
  const rate = (value) => h("button", {
    type: "button", id: `tr-rate-${value}`, class: current === value ? "" : "secondary", "aria-pressed": String(current === value),
    onclick: () => send({ metadata: { ...completion.metadata, feedback: value } }, `Rated ${value}.`),
  }, value === "good" ? "Good" : "Bad");
  const correction = h("textarea", { id: "tr-correction", maxlength: MAX_CORRECTION, placeholder: "The answer it should have given" }, completion.correction || "");
  correction.value = completion.correction || "";
  const save = h("button", { type: "submit", id: "tr-save-correction" }, "Save correction");
  const clear = h("button", { type: "button", class: "secondary", id: "tr-clear-correction", disabled: !completion.correction,
    onclick: () => send(correctionBody(completion, ""), "Correction cleared.") }, "Clear");
  const remove = h("button", { type: "button", class: "danger", id: "tr-delete", onclick: async () => {
    if (!window.confirm(`Delete ${id} and its feedback for good?`)) return;
    try {
      await api("DELETE", completionPath(id));
      on.deleted(id);
      replace(detail, h("div", { class: "card" }, h("p", { class: "muted", id: "tr-deleted" }, `Deleted ${id}.`)));
    } catch (err) { replace(outcome, errorText(err)); }
  } }, "Delete");

  const metadata = Object.entries(completion.metadata);
  const asked = completion.request_model !== completion.model ? ` (asked for ${completion.request_model})` : "";
  const answer = completion.choices.length ? completion.choices[0].message.content || "" : "";
  replace(detail,
    h("div", { class: "card", id: "tr-completion", "data-id": id },
      h("h2", { class: "mono" }, id),
      h("p", { class: "muted" }, `${when(completion.created)} · `, h("span", { class: "mono" }, completion.model), asked,
        completion.usage ? ` · ${completion.usage.prompt_tokens} + ${completion.usage.completion_tokens} tokens` : ""),
      metadata.length ? h("p", { id: "tr-metadata-shown" }, metadata.map(([k, v]) => h("span", { class: "tag" }, `${k}: ${v.length > 80 ? `${v.slice(0, 79)}…` : v}`))) : null,
      h("h2", {}, "Messages"), h("div", { id: "tr-messages" }, messages.data.map(messageBlock)),
      h("h2", {}, "Answer"), h("div", { class: "answer", id: "tr-answer" }, answer),
      citationList(completion.citations)),
    h("div", { class: "card" },
      h("h2", {}, "Feedback"),
      h("div", { class: "row" }, rate("good"), rate("bad"), h("span", { class: "muted" }, current ? `rated ${current}` : "not rated")),
      h("form", { onsubmit: (e) => {
        e.preventDefault();
        const text = correction.value.trim();
        if (!text) { replace(outcome, errorText(new Error("Write the corrected answer first (Clear removes one)."))); return; }
        send(correctionBody(completion, text), "Correction saved.");
      } }, field("Corrected answer (distillation trains on it instead)", correction), h("div", { class: "row" }, save, clear, remove)),
      outcome),
    h("div", { class: "card" }, h("h2", {}, "History"), h("div", { id: "tr-history" }, history(updates.data))));
}
