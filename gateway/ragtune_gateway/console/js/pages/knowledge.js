// Knowledge: the vector stores; uploading files with a progress bar and adding them to a store as a
// file batch (each file's status, its failure reason and a retry); a retrieval test that ranks
// passages with their scores and their vector and keyword ranks.

import { api, path, uploadFile } from "../api.js";
import { append, errorText, field, h, replace, statusBadge, table, when } from "../dom.js";

const POLL_MS = 1000;

export function render(view) {
  const storesCard = h("div", { class: "card" });
  const detail = h("div", {});
  append(view, h("h1", {}, "Knowledge"), h("div", { class: "grid" }, storesCard, detail));
  let selected = null;
  let timer = null;
  const batches = []; // {id, files: [...]} of this visit, newest first

  async function loadStores(withDetail = true) {
    const name = h("input", { type: "text", id: "kn-store-name", placeholder: "e.g. handbook" });
    const create = h("form", { onsubmit: async (e) => {
      e.preventDefault();
      try {
        const store = await api("POST", "/v1/vector_stores", { name: name.value || undefined });
        selected = store.id;
        await loadStores();
      } catch (err) { append(storesCard, errorText(err)); }
    } }, field("New vector store", name), h("div", { class: "row" }, h("button", { type: "submit", id: "kn-create" }, "Create")));
    try {
      const page = await api("GET", "/v1/vector_stores?limit=100");
      if (!selected && page.data.length) selected = page.data[0].id;
      const list = table([
        ["Store", (st) => h("div", {}, st.name || "(unnamed)", h("div", { class: "mono muted" }, st.id))],
        ["Files", (st) => String(st.file_counts.completed)],
        ["Chunks", (st) => String(st.chunk_count ?? "")],
      ], page.data, { onRow: (st) => { selected = st.id; loadStores(); }, selected, key: (st) => st.id });
      replace(storesCard, h("h2", {}, "Vector stores"), page.data.length ? list : h("p", { class: "muted" }, "None yet."), create);
      const store = page.data.find((st) => st.id === selected);
      if (!withDetail) return;
      if (store) showStore(store);
      else replace(detail);
    } catch (err) {
      replace(storesCard, errorText(err), create);
    }
  }

  function showStore(store) {
    const input = h("input", { type: "file", id: "kn-files", multiple: true, accept: ".txt,.md,.html,.htm,.pdf,text/*,application/pdf" });
    const uploads = h("div", { id: "kn-uploads" });
    const batchBox = h("div", { id: "kn-batch" });
    const storeFiles = h("div", { id: "kn-store-files" });
    const upload = h("button", { type: "submit", id: "kn-upload" }, "Upload and add");
    const form = h("form", { onsubmit: async (e) => {
      e.preventDefault();
      const files = Array.from(input.files);
      if (!files.length) return;
      upload.disabled = true;
      replace(uploads);
      const ids = [];
      await Promise.all(files.map(async (file) => {
        const bar = h("progress", { max: 1, value: 0 });
        const note = h("span", { class: "muted" }, "uploading");
        uploads.append(h("div", { class: "upload" }, h("div", {}, file.name, " ", note), bar));
        try {
          const uploaded = await uploadFile(file, "assistants", (f) => { bar.value = f; });
          bar.value = 1;
          replace(note, "uploaded");
          ids.push(uploaded.id);
        } catch (err) {
          replace(note, errorText(err));
        }
      }));
      if (ids.length) await addBatch(store.id, ids, batchBox, storeFiles);
      upload.disabled = false;
      input.value = "";
    } }, field("Files (text, Markdown, HTML, PDF)", input), h("div", { class: "row" }, upload), uploads);

    const query = h("input", { type: "text", id: "kn-query", placeholder: "a question or keywords" });
    const topK = h("input", { type: "number", id: "kn-topk", min: 1, max: 50, value: 5 });
    const ranker = h("select", { id: "kn-ranker" }, ["hybrid", "vector", "keyword"].map((m) => h("option", { value: m }, m)));
    const results = h("div", { id: "kn-results" });
    const search = h("form", { onsubmit: async (e) => {
      e.preventDefault();
      replace(results, h("p", { class: "muted" }, "Searching…"));
      try {
        const page = await api("POST", path("/v1/vector_stores", store.id, "search"), {
          query: query.value, max_num_results: Number(topK.value) || 5, ranking_options: { ranker: ranker.value },
        });
        replace(results, page.data.length ? page.data.map(passage) : h("p", { class: "muted" }, "No passage matched."));
      } catch (err) { replace(results, errorText(err)); }
    } }, field("Query", query), h("div", { class: "row" }, h("span", {}, "top k"), topK, ranker, h("button", { type: "submit", id: "kn-search" }, "Search")), results);

    replace(detail,
      h("div", { class: "card" }, h("h2", {}, `Add files to ${store.name || store.id}`), form, batchBox),
      h("div", { class: "card" }, h("h2", {}, "Files in the store"), storeFiles),
      h("div", { class: "card" }, h("h2", {}, "Retrieval test"), search));
    renderBatches(store.id, batchBox, storeFiles);
    loadStoreFiles(store.id, storeFiles);
  }

  function passage(hit, i) {
    const ranks = hit.vector_rank === undefined ? "ranks not reported"
      : `vector rank ${hit.vector_rank ?? "–"}, keyword rank ${hit.keyword_rank ?? "–"}`;
    return h("div", { class: "passage", "data-rank": i + 1 },
      h("div", { class: "meta" }, `#${i + 1} · score ${hit.score.toFixed(4)} · ${ranks} · ${hit.filename}`),
      h("div", {}, hit.content.map((c) => c.text).join("\n")));
  }

  async function loadStoreFiles(storeId, box) {
    try {
      const page = await api("GET", `${path("/v1/vector_stores", storeId, "files")}?limit=100`);
      replace(box, page.data.length ? table([
        ["File", (f) => h("div", {}, f.filename || f.id, h("div", { class: "mono muted" }, f.id))],
        ["Status", (f) => statusBadge(f.status)],
        ["Chunks", (f) => String(f.chunk_count ?? "")],
        ["Added", (f) => when(f.created_at)],
      ], page.data, { key: (f) => f.id }) : h("p", { class: "muted" }, "No file yet."));
    } catch (err) { replace(box, errorText(err)); }
  }

  async function addBatch(storeId, ids, box, storeFiles) {
    try {
      const batch = await api("POST", path("/v1/vector_stores", storeId, "file_batches"), { file_ids: ids });
      batches.unshift({ id: batch.id, storeId, batch, files: [] });
      await pollBatches(storeId, box, storeFiles);
    } catch (err) { append(box, errorText(err)); }
  }

  async function pollBatches(storeId, box, storeFiles) {
    clearTimeout(timer);
    let running = false;
    for (const entry of batches.filter((b) => b.storeId === storeId)) {
      if (entry.batch.status !== "in_progress" && entry.files.length) continue;
      entry.batch = await api("GET", path("/v1/vector_stores", storeId, "file_batches", entry.id));
      entry.files = (await api("GET", `${path("/v1/vector_stores", storeId, "file_batches", entry.id, "files")}?limit=100`)).data;
      running = running || entry.batch.status === "in_progress";
    }
    renderBatches(storeId, box, storeFiles);
    if (running) timer = setTimeout(() => pollBatches(storeId, box, storeFiles).catch((e) => append(box, errorText(e))), POLL_MS);
    else {
      loadStoreFiles(storeId, storeFiles);
      loadStores(false); // the store's counts
    }
  }

  function renderBatches(storeId, box, storeFiles) {
    const mine = batches.filter((b) => b.storeId === storeId);
    if (!mine.length) { replace(box); return; }
    const rows = mine.flatMap((b) => b.files.map((f) => ({ ...f, batch: b.id })));
    const retry = (f) => h("button", { class: "secondary retry", type: "button", onclick: (e) => { e.stopPropagation(); addBatch(storeId, [f.id], box, storeFiles); } }, "Retry");
    replace(box, h("h2", {}, "Recent uploads"), table([
      ["File", (f) => h("div", {}, f.filename || f.id, h("div", { class: "mono muted" }, f.id))],
      ["Status", (f) => statusBadge(f.status)],
      ["Reason", (f) => (f.last_error ? h("span", { class: "error" }, f.last_error.message) : "")],
      ["", (f) => (f.status === "failed" ? retry(f) : "")],
    ], rows, { key: (f) => `${f.batch}/${f.id}` }));
  }

  loadStores();
  return () => clearTimeout(timer);
}
