// The steps after a distillation, each drawing one card and saying whether it needs watching:
// 2. fine-tune on its file (POST /v1/fine_tuning/jobs) and follow the job; 3. evaluate the adapter
// and what the alias serves on its held-out traffic (an eval whose data source is stored completions,
// one run per model, GET /v1/evals/{id}/comparison); 4. promote the adapter from its run
// (POST /v1/evals/{id}/promote: only a significant improvement moves the alias) or roll the alias back.

import { api, listAll, modelGroups, path } from "../api.js";
import { append, errorText, field, h, replace, statusBadge, table, when } from "../dom.js";

const JOB_FINAL = new Set(["succeeded", "failed", "cancelled"]);
const RUN_FINAL = new Set(["completed", "failed", "canceled"]);
const GRADERS = {
  exact: { type: "string_check", name: "exact", input: "{{sample.output_text}}", reference: "{{item.reference}}", operation: "eq" },
  contains: { type: "string_check", name: "contains", input: "{{sample.output_text}}", reference: "{{item.reference}}", operation: "ilike" },
  fuzzy: { type: "text_similarity", name: "fuzzy", input: "{{sample.output_text}}", reference: "{{item.reference}}", evaluation_metric: "fuzzy_match", pass_threshold: 0.8 },
};
export const remembered = { alias: "" }; // what was typed survives the redraws while watching

/** A promotion's outcome: the alias moved, or stayed with its holder. */
function decision(p) {
  return h("span", { class: `status ${p.promoted ? "succeeded" : "failed"}`, "data-promoted": String(p.promoted) }, p.promoted ? "moved" : "kept");
}

/** A pass rate or a difference of pass rates (fractions, as the comparison gives them) in percent. */
function rate(interval) {
  const pct = (x) => (100 * x).toFixed(1);
  return interval ? `${pct(interval.value)} [${pct(interval.low)}, ${pct(interval.high)}]` : "–";
}

export async function fineTuneCard(card, state, reload) {
  const d = state.distillation;
  const jobs = d.file_id ? (await api("GET", "/v1/fine_tuning/jobs?limit=100")).data.filter((j) => j.training_file === d.file_id) : [];
  state.job = jobs[0] || null;
  const title = h("h2", {}, "2. Fine-tune");
  if (!state.job) {
    if (!d.file_id) { replace(card, title, h("p", { class: "muted" }, "Its file is gone.")); return false; }
    const base = await modelGroups().then((g) => g.base.map((m) => m.id), () => []); // none while no generator answers
    const model = h("select", { id: "lp-base" }, h("option", { value: "" }, "the server's base model"), base.map((id) => h("option", { value: id }, id)));
    const epochs = h("input", { type: "number", id: "lp-epochs", min: 1, max: 50, value: 3 });
    const batch = h("input", { type: "number", id: "lp-batch", min: 1, max: 256, value: 2 });
    const lr = h("input", { type: "number", id: "lp-lr", min: 0.01, max: 100, step: "any", value: 1 });
    const error = h("div");
    replace(card, title, h("form", { onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api("POST", "/v1/fine_tuning/jobs", { model: model.value || undefined, training_file: d.file_id, hyperparameters: { n_epochs: Number(epochs.value), batch_size: Number(batch.value), learning_rate_multiplier: Number(lr.value) } });
        reload(); // draws the job and watches it
      } catch (err) { replace(error, errorText(err)); }
    } }, h("div", { class: "cols2" }, h("div", {}, field("Base model", model)), h("div", {}, field("Epochs", epochs)),
      h("div", {}, field("Batch size", batch)), h("div", {}, field("Learning-rate multiplier", lr))),
    h("div", { class: "row" }, h("button", { type: "submit", id: "lp-train" }, "Start fine-tuning")), error));
    return false;
  }
  const job = state.job;
  const done = JOB_FINAL.has(job.status);
  const cancel = h("button", { type: "button", class: "danger", id: "lp-cancel-job", disabled: done, onclick: async () => {
    try { await api("POST", path("/v1/fine_tuning/jobs", job.id, "cancel")); } catch (err) { append(card, errorText(err)); }
  } }, "Cancel");
  replace(card, title,
    h("p", { id: "lp-job" }, h("span", { class: "mono" }, job.id), " ", statusBadge(job.status),
      job.fine_tuned_model ? [" → ", h("span", { class: "mono", id: "lp-adapter" }, job.fine_tuned_model)] : ""),
    job.total_steps ? h("progress", { max: job.total_steps, value: job.step || 0 }) : null,
    h("p", { class: "muted" }, job.total_steps ? `step ${job.step || 0} / ${job.total_steps}` : "waiting for the trainer",
      job.train_loss ? ` · loss ${job.train_loss.toFixed(4)}` : "", ` · started ${when(job.created_at)} · the Fine-tuning page has its loss curve`),
    job.error && job.error.message ? h("p", { class: "error" }, job.error.message) : null,
    h("div", { class: "row" }, cancel));
  return !done;
}

async function holderOf(alias) {
  try { return (await api("GET", path("/v1/aliases", alias))).model; } catch (err) { if (err.status === 404) return null; throw err; }
}

function runSource(model, distillationId, maxTokens, role) {
  return {
    name: role, metadata: { role },
    data_source: {
      type: "completions", model,
      input_messages: { type: "item_reference", item_reference: "item.input" },
      sampling_params: { temperature: 0, max_completion_tokens: maxTokens },
      source: { type: "stored_completions", distillation_id: distillationId },
    },
  };
}

export async function evaluateCard(card, state, reload) {
  const d = state.distillation;
  const title = h("h2", {}, "3. Evaluate on the held-out traffic");
  const evals = await listAll("/v1/evals");
  state.evaluation = evals.find((e) => e.metadata && e.metadata.distillation_id === d.id) || null;
  if (!state.evaluation) {
    const adapter = state.job && state.job.status === "succeeded" ? state.job.fine_tuned_model : null;
    if (!adapter) { replace(card, title, h("p", { class: "muted", id: "lp-eval-waiting" }, "Once the job has succeeded, its adapter is compared here with what the alias serves, on the held-out completions.")); return false; }
    if (!d.counts.holdout) { replace(card, title, h("p", { class: "muted" }, "This dataset held nothing out: build one with a held-out share.")); return false; }
    const alias = h("input", { type: "text", id: "lp-eval-alias", value: remembered.alias, placeholder: "e.g. ft:support", oninput: (e) => { remembered.alias = e.target.value; } });
    const grader = h("select", { id: "lp-grader" }, [["exact", "exact match"], ["contains", "contains the reference"], ["fuzzy", "fuzzy match ≥ 0.8"]].map(([v, t]) => h("option", { value: v }, t)));
    const maxTokens = h("input", { type: "number", id: "lp-max-tokens", min: 1, max: 4096, value: 64 });
    const error = h("div", { id: "lp-eval-error" });
    replace(card, title, h("form", { onsubmit: async (e) => {
      e.preventDefault();
      replace(error);
      try {
        const name = alias.value.trim();
        if (!name) throw new Error("Name the alias the adapter would take over.");
        const holder = await holderOf(name);
        const made = await api("POST", "/v1/evals", {
          name: `held-out traffic of ${d.id}`, metadata: { distillation_id: d.id, alias: name },
          data_source_config: { type: "stored_completions" }, testing_criteria: [GRADERS[grader.value]],
        });
        const tokens = Number(maxTokens.value) || 64;
        if (holder && holder !== adapter) await api("POST", path("/v1/evals", made.id, "runs"), runSource(holder, d.id, tokens, "holder"));
        await api("POST", path("/v1/evals", made.id, "runs"), runSource(adapter, d.id, tokens, "candidate"));
        reload();
      } catch (err) { replace(error, errorText(err)); }
    } }, h("p", { class: "muted" }, `${d.counts.holdout} held-out completions; the reference is each one's correction, else its answer.`),
    field("Alias", alias), h("div", { class: "cols2" }, h("div", {}, field("Grader", grader)), h("div", {}, field("Max tokens", maxTokens))),
    h("div", { class: "row" }, h("button", { type: "submit", id: "lp-evaluate" }, "Evaluate")), error));
    return false;
  }
  const ev = state.evaluation;
  remembered.alias = remembered.alias || ev.metadata.alias || "";
  state.runs = (await api("GET", `${path("/v1/evals", ev.id, "runs")}?limit=10&order=asc`)).data;
  const runs = table([
    ["Run", (r) => h("span", {}, r.name, h("div", { class: "mono muted" }, r.model))],
    ["Status", (r) => statusBadge(r.status)],
    ["Passed", (r) => `${r.result_counts.passed} / ${r.result_counts.total}${r.result_counts.errored ? ` (${r.result_counts.errored} errored)` : ""}`],
    ["", (r) => (r.error ? h("span", { class: "error" }, r.error.message) : "")],
  ], state.runs, { key: (r) => r.name });
  const watching = state.runs.some((r) => !RUN_FINAL.has(r.status));
  const verdict = h("div", { id: "lp-verdict" });
  replace(card, title, h("p", { class: "muted" }, h("span", { class: "mono" }, ev.id), ` · alias ${ev.metadata.alias || ""}`), h("div", { id: "lp-runs" }, runs), verdict);
  if (!watching && state.runs.some((r) => r.status === "completed")) {
    try {
      const cmp = await api("GET", path("/v1/evals", ev.id, "comparison"));
      append(verdict, h("p", { class: "status" }, cmp.recommendation),
        table([["Run", (r) => r.name], ["Items", (r) => String(r.items)], ["Pass rate % (interval)", (r) => Object.values(r.pass_rate).map(rate).join(" · ")]], cmp.runs),
        cmp.comparisons.map((p) => h("p", { class: "muted" }, `candidate − holder: ${rate(p.difference)} points on ${p.items} items (${p.test}${p.p_value !== null ? `, p = ${p.p_value.toFixed(3)}` : ""}) · ${p.significant ? "significant" : "not significant"}`)));
    } catch (err) { append(verdict, errorText(err)); }
  }
  return watching;
}

export async function promoteCard(card, state) {
  const title = h("h2", {}, "4. Promote or roll back");
  const alias = h("input", { type: "text", id: "lp-alias", value: remembered.alias, placeholder: "e.g. ft:support", oninput: (e) => { remembered.alias = e.target.value; } });
  const outcome = h("div", { id: "lp-outcome" });
  const history = h("div", { id: "lp-history" });
  const candidateRun = state.runs.find((r) => r.name === "candidate" && r.status === "completed");
  const act = async (call) => {
    replace(outcome);
    try {
      const p = await call(alias.value.trim());
      replace(outcome, h("p", {}, decision(p), ` ${p.alias} → ${p.candidate}: ${p.reason}`));
      await showHistory();
    } catch (err) { replace(outcome, errorText(err)); }
  };
  async function showHistory() {
    const name = alias.value.trim();
    if (!name) return;
    try {
      const holder = await holderOf(name);
      const moves = holder ? (await api("GET", path("/v1/aliases", name, "promotions"))).data.slice(-5).reverse() : [];
      replace(history, h("p", {}, `${name} is held by `, h("span", { class: "mono", id: "lp-holder" }, holder || "nobody")), moves.length ? table([
        ["When", (p) => when(p.created_at)], ["Candidate", (p) => h("span", { class: "mono" }, p.candidate)],
        ["Decision", decision], ["Reason", (p) => p.reason],
      ], moves) : null);
    } catch (err) { replace(history, errorText(err)); }
  }
  const promote = h("button", { type: "button", id: "lp-promote", disabled: !candidateRun, title: candidateRun ? "" : "needs the candidate's completed run",
    onclick: () => act((name) => api("POST", path("/v1/evals", state.evaluation.id, "promote"), { alias: name, run_id: candidateRun.id })) }, "Promote the adapter");
  const rollback = h("button", { type: "button", class: "danger", id: "lp-rollback",
    onclick: () => act((name) => api("POST", path("/v1/aliases", name, "rollback"))) }, "Roll back");
  replace(card, title, field("Alias", alias),
    h("div", { class: "row" }, promote, rollback, h("button", { type: "button", class: "secondary", id: "lp-show-alias", onclick: showHistory }, "Show")),
    h("p", { class: "muted" }, "The alias moves only on a significant improvement over its holder on the same items; a roll back gives it to the holder its last move displaced."),
    outcome, history);
  await showHistory();
  return false;
}
