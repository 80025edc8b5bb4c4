// Distill & promote: the loop after Traffic. Build a fine-tuning file from stored completions chosen
// by a filter, with a held-out share (POST /v1/distillations); then, for the distillation chosen,
// fine-tune on it, evaluate the adapter against what the alias serves on the held-out traffic, and
// promote it or roll the alias back (./loop_steps.js).

import { api } from "../api.js";
import { append, errorText, field, h, replace, table, when } from "../dom.js";
import { parsePairs } from "./traffic.js";
import { evaluateCard, fineTuneCard, promoteCard } from "./loop_steps.js";

const POLL_MS = 2000;

function seconds(input) {
  return input.value ? Math.floor(new Date(input.value).getTime() / 1000) : undefined;
}

function counts(d) {
  const c = d.counts;
  return `${c.training} training, ${c.holdout} held out (${c.matched} matched, ${c.corrected} corrected, ${c.rejected} rejected, ${c.merged} merged${c.teacher ? `, ${c.teacher} from the teacher` : ""})`;
}

export function render(view) {
  const formCard = h("div", { class: "card" });
  const listCard = h("div", { class: "card", id: "lp-list" }, h("p", { class: "muted" }, "Loading…"));
  const detail = h("div", { id: "lp-detail" }, h("div", { class: "card" }, h("p", { class: "muted" }, "Build a dataset, or choose one, to fine-tune, evaluate and promote.")));
  append(view, h("h1", {}, "Distill & promote"), h("div", { class: "grid loop" }, h("div", {}, formCard, listCard), detail));
  let selected = null;
  let timer = null;

  const c = {
    model: h("input", { type: "text", id: "lp-model", placeholder: "any model, adapter or alias" }),
    metadata: h("input", { type: "text", id: "lp-metadata", placeholder: "key=value, key=value" }),
    ratings: ["good", "bad", "none"].map((r) => h("input", { type: "checkbox", value: r, id: `lp-rating-${r}`, checked: true })),
    from: h("input", { type: "datetime-local", id: "lp-from" }),
    to: h("input", { type: "datetime-local", id: "lp-to" }),
    holdout: h("input", { type: "number", id: "lp-holdout", min: 0, max: 0.9, step: 0.05, value: 0.2 }),
    seed: h("input", { type: "number", id: "lp-seed", min: 0, value: 0 }),
    teacher: h("input", { type: "text", id: "lp-teacher", placeholder: "optional: a model that re-answers" }),
    teacherUrl: h("input", { type: "text", id: "lp-teacher-url", placeholder: "default: this server" }),
  };
  const error = h("div", { id: "lp-error" });
  const build = h("button", { type: "submit", id: "lp-build" }, "Build dataset");
  append(formCard, h("h2", {}, "1. Dataset from stored traffic"), h("form", { onsubmit: async (e) => {
    e.preventDefault();
    replace(error);
    try {
      const filter = {
        model: c.model.value.trim() || undefined,
        feedback: c.ratings.filter((r) => r.checked).map((r) => r.value),
        created_after: seconds(c.from),
        created_before: seconds(c.to),
      };
      const metadata = parsePairs(c.metadata.value);
      if (Object.keys(metadata).length) filter.metadata = metadata;
      if (!filter.feedback.length) throw new Error("Take at least one rating.");
      const body = { filter, holdout_fraction: Number(c.holdout.value), seed: Number(c.seed.value) };
      if (c.teacher.value.trim()) body.teacher = { model: c.teacher.value.trim(), base_url: c.teacherUrl.value.trim() || undefined };
      build.disabled = true;
      const made = await api("POST", "/v1/distillations", body);
      selected = made.id;
      await load();
    } catch (err) { replace(error, errorText(err)); } finally { build.disabled = false; }
  } },
  field("Model", c.model), field("Metadata", c.metadata),
  h("label", {}, "Ratings taken (bad only with a correction)"),
  h("div", { class: "row" }, c.ratings.map((r) => h("label", { class: "inline" }, r, r.value === "none" ? "not rated" : r.value))),
  h("div", { class: "cols2" }, h("div", {}, field("From", c.from)), h("div", {}, field("Until", c.to)),
    h("div", {}, field("Held-out share", c.holdout)), h("div", {}, field("Seed", c.seed)),
    h("div", {}, field("Teacher model", c.teacher)), h("div", {}, field("Teacher endpoint", c.teacherUrl))),
  h("div", { class: "row" }, build), error));

  async function load() {
    clearTimeout(timer);
    try {
      const page = await api("GET", "/v1/distillations?limit=20");
      if (!selected && page.data.length) selected = page.data[0].id;
      replace(listCard, h("h2", {}, "Datasets"), page.data.length ? table([
        ["Built", (d) => when(d.created_at)],
        ["Lines", (d) => `${d.counts.training} + ${d.counts.holdout} held out`],
        ["File", (d) => h("span", { class: "mono" }, d.file_id || "deleted")],
      ], page.data, { onRow: (d) => { selected = d.id; load(); }, selected, key: (d) => d.id }) : h("p", { class: "muted" }, "No dataset yet."));
      const chosen = page.data.find((d) => d.id === selected);
      if (chosen) await show(chosen);
    } catch (err) { replace(listCard, errorText(err)); }
  }

  async function show(d) {
    const head = h("div", { class: "card", id: "lp-distillation", "data-id": d.id },
      h("h2", { class: "mono" }, d.id),
      h("p", { id: "lp-counts" }, counts(d)),
      h("p", { class: "muted" }, "File ", h("span", { class: "mono" }, d.file_id || "deleted"), ` (${d.filename}) · filter ${JSON.stringify(d.filter)} · held-out share ${d.holdout_fraction}, seed ${d.seed}`,
        d.teacher ? ` · teacher ${d.teacher.model}` : ""));
    const steps = [fineTuneCard, evaluateCard, promoteCard];
    const cards = steps.map(() => h("div", { class: "card" }));
    replace(detail, head, cards);
    const state = { distillation: d, job: null, evaluation: null, runs: [] };
    let watching = false;
    for (const [i, step] of steps.entries()) {
      try { watching = (await step(cards[i], state, () => load())) || watching; } catch (err) { replace(cards[i], errorText(err)); }
    }
    if (watching) timer = setTimeout(load, POLL_MS);
  }

  load();
  return () => clearTimeout(timer);
}
