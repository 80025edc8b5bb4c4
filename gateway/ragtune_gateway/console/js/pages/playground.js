// Playground: a model, adapter or alias; RAG on or off over one of the stores with top-k; the
// answer streamed; each citation opens its passage highlighted inside its document.

import { api, apiText, modelGroups, path, streamEvents } from "../api.js";
import { append, errorText, field, h, replace } from "../dom.js";

function modelPicker(groups) {
  const select = h("select", { id: "pg-model" });
  const add = (label, models) => {
    if (models.length) select.append(h("optgroup", { label }, models.map((m) => h("option", { value: m.id }, m.alias_for ? `${m.id} → ${m.alias_for}` : m.id))));
  };
  add("Base models", groups.base);
  add("Fine-tuned adapters", groups.adapters);
  add("Aliases", groups.aliases);
  return select;
}

/** The passage at [start, end) of the document's text (code points, as the retriever counts). */
function highlighted(text, citation) {
  const chars = Array.from(text);
  let start = citation.start_offset;
  let end = citation.end_offset;
  if (chars.slice(start, end).join("") !== citation.text) {
    const at = text.indexOf(citation.text); // the bytes are not the extracted text (e.g. PDF): find it
    if (at < 0) return null;
    start = Array.from(text.slice(0, at)).length;
    end = start + Array.from(citation.text).length;
  }
  const mark = h("mark", { id: "passage" }, chars.slice(start, end).join(""));
  return [chars.slice(0, start).join(""), mark, chars.slice(end).join("")];
}

async function openCitation(viewer, citation) {
  replace(viewer, h("h2", {}, `[${citation.index}] ${citation.filename || citation.document_id}`), h("p", { class: "muted" }, "Loading the document…"));
  const doc = h("div", { class: "document", id: "doc-viewer" });
  try {
    const text = citation.file_id ? await apiText(path("/v1/files", citation.file_id, "content")) : null;
    const parts = text === null ? null : highlighted(text, citation);
    if (parts) append(doc, parts);
    else append(doc, h("mark", { id: "passage" }, citation.text));
    replace(viewer, h("h2", {}, `[${citation.index}] ${citation.filename || citation.document_id}`),
      h("p", { class: "muted" }, `characters ${citation.start_offset}–${citation.end_offset}, score ${citation.score.toFixed(3)}`), doc);
    doc.querySelector("mark").scrollIntoView({ block: "center" });
  } catch (e) {
    replace(viewer, errorText(e));
  }
}

export function render(view) {
  const controls = h("div", { class: "card" }, h("p", { class: "muted" }, "Loading models and stores…"));
  const output = h("div", { class: "card" }, h("h2", {}, "Answer"), h("div", { class: "answer", id: "pg-answer" }), h("ol", { class: "citations", id: "pg-citations" }));
  const viewer = h("div", { class: "card", id: "pg-viewer" }, h("p", { class: "muted" }, "Click a citation to read it in its document."));
  append(view, h("h1", {}, "Playground"), h("div", { class: "grid" }, controls, h("div", {}, output, viewer)));
  let abort = null;

  (async () => {
    let groups, stores;
    try {
      [groups, stores] = await Promise.all([modelGroups(), api("GET", "/v1/vector_stores?limit=100")]);
    } catch (e) {
      replace(controls, errorText(e));
      return;
    }
    const model = modelPicker(groups);
    const rag = h("input", { type: "checkbox", id: "pg-rag", checked: stores.data.length > 0 });
    const store = h("select", { id: "pg-store" }, stores.data.map((st) => h("option", { value: st.id }, st.name ? `${st.name} (${st.id})` : st.id)));
    const topK = h("input", { type: "number", id: "pg-topk", min: 1, max: 50, value: 3 });
    const maxTokens = h("input", { type: "number", id: "pg-max-tokens", min: 1, max: 4096, value: 128 });
    const question = h("textarea", { id: "pg-question", placeholder: "Ask something…" });
    const send = h("button", { id: "pg-send", type: "submit" }, "Send");
    const stop = h("button", { class: "secondary", type: "button", disabled: true, onclick: () => abort && abort.abort() }, "Stop");
    const form = h("form", { onsubmit: (e) => { e.preventDefault(); ask(); } },
      field("Model, adapter or alias", model),
      h("label", { class: "inline" }, rag, "Answer from a vector store (RAG)"),
      field("Vector store", store), field("Passages (top k)", topK), field("Max tokens", maxTokens),
      field("Question", question), h("div", { class: "row" }, send, stop));
    replace(controls, form);
    if (!stores.data.length) append(controls, h("p", { class: "muted" }, "No vector store yet: create one under Knowledge."));

    async function ask() {
      const answer = output.querySelector("#pg-answer");
      const list = output.querySelector("#pg-citations");
      replace(answer);
      replace(list);
      replace(viewer, h("p", { class: "muted" }, "Click a citation to read it in its document."));
      const body = {
        model: model.value,
        messages: [{ role: "user", content: question.value }],
        stream: true,
        max_tokens: Number(maxTokens.value) || 128,
      };
      if (rag.checked && store.value) body.rag = { vector_store_ids: [store.value], top_k: Number(topK.value) || 3 };
      abort = new AbortController();
      send.disabled = true;
      stop.disabled = false;
      answer.dataset.state = "streaming";
      try {
        for await (const chunk of streamEvents("/v1/chat/completions", body, abort.signal)) {
          for (const c of chunk.citations || []) {
            list.append(h("li", {}, h("button", { class: "citation", type: "button", "data-index": c.index, onclick: () => openCitation(viewer, c) },
              `[${c.index}] ${c.filename || c.document_id}`), h("span", { class: "muted" }, ` score ${c.score.toFixed(3)}`)));
          }
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) answer.append(delta.content);
        }
        answer.dataset.state = "done";
      } catch (e) {
        answer.dataset.state = "failed";
        if (e.name !== "AbortError") answer.after(errorText(e));
      } finally {
        send.disabled = false;
        stop.disabled = true;
      }
    }
  })();
  return () => abort && abort.abort();
}
