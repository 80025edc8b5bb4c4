// Evaluations: start a run on a QA dataset (purpose "evals"), watch its progress, read the
// four-arm comparison (table and the run's chart.svg) and the alias promotion it decided.

import { api, apiBlob, path, uploadFile } from "../api.js";
import { append, errorText, field, h, replace, statusBadge, table, when } from "../dom.js";

const POLL_MS = 2000;
const ARMS = ["base", "rag", "ft", "rag+ft"];
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

function pct(value, ci) {
  if (value === null || value === undefined) return "–";
  const interval = Array.isArray(ci) && ci.length === 2 ? ` [${ci[0].toFixed(1)}, ${ci[1].toFixed(1)}]` : "";
  return `${value.toFixed(1)}${interval}`;
}

function armsTable(report) {
  const rows = Object.entries(report.arms || {}).map(([arm, fig]) => ({ arm, ...fig }));
  return table([
    ["Arm", (r) => h("strong", {}, r.arm)],
    ["Questions", (r) => String(r.questions ?? "")],
    ["EM %", (r) => pct(r.em, r.em_ci)],
    ["F1 %", (r) => pct(r.f1, r.f1_ci)],
    ["Latency p50 / p95 ms", (r) => `${r.latency_p50_ms ?? "–"} / ${r.latency_p95_ms ?? "–"}`],
    ["Tokens/s", (r) => String(r.output_tokens_per_s ?? "–")],
    ["Recall@k", (r) => (r.retrieval && r.retrieval.hit_at_k !== undefined ? pct(r.retrieval.hit_at_k) : "")],
  ], rows, { key: (r) => r.arm });
}

export function render(view) {
  const startCard = h("div", { class: "card" });
  const listCard = h("div", { class: "card" });
  const detail = h("div", { id: "ev-detail" });
  append(view, h("h1", {}, "Evaluations"), h("div", { class: "grid" }, h("div", {}, startCard, listCard), detail));
  let selected = null;
  let timer = null;
  let chartUrl = null;

  const dataset = h("input", { type: "file", id: "ev-dataset", accept: ".jsonl,.json" });
  const bar = h("progress", { max: 1, value: 0 });
  const train = h("input", { type: "number", id: "ev-train", min: 1, value: 300 });
  const test = h("input", { type: "number", id: "ev-test", min: 1, value: 300 });
  const epochs = h("input", { type: "number", id: "ev-epochs", min: 1, max: 50, value: 2 });
  const arms = ARMS.map((arm) => h("input", { type: "checkbox", value: arm, checked: true }));
  const alias = h("input", { type: "text", id: "ev-alias", placeholder: "optional, e.g. ft:latest-good" });
  const error = h("div");
  append(startCard, h("h2", {}, "New evaluation"), h("form", { onsubmit: async (e) => {
    e.preventDefault();
    replace(error);
    if (!dataset.files.length) { replace(error, errorText(new Error("Choose a QA dataset first."))); return; }
    try {
      const file = await uploadFile(dataset.files[0], "evals", (f) => { bar.value = f; });
      const body = {
        file_id: file.id, train: Number(train.value), test: Number(test.value), epochs: Number(epochs.value),
        arms: arms.filter((a) => a.checked).map((a) => a.value),
      };
      if (alias.value) body.promote = { alias: alias.value };
      const evaluation = await api("POST", "/v1/evaluations", body);
      selected = evaluation.id;
      await load();
    } catch (err) { replace(error, errorText(err)); }
  } }, field("QA dataset (JSONL: question, answers, context)", dataset), bar,
  h("div", { class: "cols2" }, h("div", {}, field("Training questions", train)), h("div", {}, field("Test questions", test)), h("div", {}, field("Epochs", epochs))),
  h("label", {}, "Arms"), h("div", { class: "row" }, ARMS.map((arm, i) => h("label", { class: "inline" }, arms[i], arm))),
  field("Promote the winner to the alias", alias),
  h("div", { class: "row" }, h("button", { type: "submit", id: "ev-start" }, "Start")), error));

  async function load() {
    clearTimeout(timer);
    try {
      const page = await api("GET", "/v1/evaluations?limit=20");
      if (!selected && page.data.length) selected = page.data[0].id;
      replace(listCard, h("h2", {}, "Runs"), page.data.length ? table([
        ["Run", (ev) => h("span", { class: "mono" }, ev.id)],
        ["Status", (ev) => statusBadge(ev.status)],
        ["Created", (ev) => when(ev.created_at)],
      ], page.data, { onRow: (ev) => { selected = ev.id; load(); }, selected, key: (ev) => ev.id }) : h("p", { class: "muted" }, "No evaluation yet."));
      if (selected) await show(selected);
    } catch (err) { replace(listCard, errorText(err)); }
  }

  async function show(id) {
    const ev = await api("GET", path("/v1/evaluations", id));
    const steps = ev.progress.steps.map((st) => h("div", { class: "step" },
      h("div", {}, st.description, h("span", { class: "muted" }, ` ${st.completed}${st.total ? ` / ${st.total}` : ""} ${st.note || ""}`)),
      h("progress", { max: st.total || 1, value: st.total ? st.completed : 0 })));
    const cancel = h("button", { class: "danger", disabled: FINAL.has(ev.status), onclick: async () => {
      try { await api("POST", path("/v1/evaluations", id, "cancel")); load(); } catch (err) { append(detail, errorText(err)); }
    } }, "Cancel");
    const cards = [h("div", { class: "card" }, h("h2", {}, ev.id), h("p", {}, statusBadge(ev.status), ev.error ? h("span", { class: "error" }, ` · ${ev.error.message}`) : ""),
      h("div", { class: "row" }, cancel), steps)];
    if (ev.report) {
      const img = h("img", { class: "chart", alt: "F1 against latency per arm", id: "ev-chart" });
      cards.push(h("div", { class: "card" }, h("h2", {}, "Four arms"), armsTable(ev.report), h("div", { class: "row" }, img)));
      apiBlob(path("/v1/evaluations", id, "chart.svg")).then((blob) => {
        if (chartUrl) URL.revokeObjectURL(chartUrl);
        chartUrl = URL.createObjectURL(blob);
        img.src = chartUrl;
      }).catch(() => img.replaceWith(h("p", { class: "muted" }, "No chart for this run.")));
    }
    if (ev.promotion) {
      const p = ev.promotion;
      cards.push(h("div", { class: "card" }, h("h2", {}, "Promotion"),
        h("p", {}, statusBadge(p.promoted ? "completed" : "failed"), ` ${p.alias || ""} → ${p.candidate || ""}`),
        h("p", { class: "muted" }, p.reason || "")));
    }
    replace(detail, cards);
    if (!FINAL.has(ev.status)) timer = setTimeout(load, POLL_MS);
  }

  load();
  return () => { clearTimeout(timer); if (chartUrl) URL.revokeObjectURL(chartUrl); };
}
