// Fine-tuning: upload a JSONL dataset (its validation report line by line when it is refused),
// create a job, follow its training and eval loss from the job's events, its checkpoints; cancel.

import { api, listAll, modelGroups, path, uploadFile } from "../api.js";
import { lineChart } from "../chart.js";
import { append, errorText, field, h, replace, statusBadge, table, when } from "../dom.js";

const POLL_MS = 1500;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const REPORT_PREFIX = "Invalid training file: ";

/** The trainer's report ("Invalid training file: line 2: messages: ...; line 5: ...") as a list. */
function report(message) {
  if (!message.startsWith(REPORT_PREFIX)) return h("p", { class: "error" }, message);
  const lines = message.slice(REPORT_PREFIX.length).split(/; (?=line \d+:|file:|and \d+ more)/);
  return h("div", { id: "ft-report" }, h("p", { class: "error" }, "The dataset was refused:"), h("ol", { class: "report" }, lines.map((l) => h("li", {}, l))));
}

function numberInput(id, value, attrs = {}) {
  return h("input", { type: "number", id, value, ...attrs });
}

export function render(view) {
  const uploadCard = h("div", { class: "card" });
  const createCard = h("div", { class: "card" });
  const jobsCard = h("div", { class: "card" });
  const detail = h("div", { id: "ft-detail" });
  append(view, h("h1", {}, "Fine-tuning"), h("div", { class: "grid" }, h("div", {}, uploadCard, createCard, jobsCard), detail));
  let selected = null;
  let timer = null;
  let follow = null; // {jobId, after, train: [], evaluation: []}

  // Upload.
  const input = h("input", { type: "file", id: "ft-dataset", accept: ".jsonl,application/jsonl,text/plain" });
  const bar = h("progress", { max: 1, value: 0 });
  const outcome = h("div", { id: "ft-upload-outcome" });
  append(uploadCard, h("h2", {}, "Dataset"), h("form", { onsubmit: async (e) => {
    e.preventDefault();
    if (!input.files.length) return;
    replace(outcome);
    try {
      const file = await uploadFile(input.files[0], "fine-tune", (f) => { bar.value = f; });
      replace(outcome, h("p", {}, "Accepted: ", h("span", { class: "mono" }, file.id)));
      await loadCreate(file.id);
    } catch (err) {
      bar.value = 0;
      replace(outcome, err.status === 400 ? report(err.message) : errorText(err));
    }
  } }, field("JSONL of chat examples ({\"messages\": [...]} per line)", input), bar, h("div", { class: "row" }, h("button", { type: "submit", id: "ft-upload" }, "Upload")), outcome));

  // Create.
  async function loadCreate(chosenFile) {
    try {
      const [groups, files] = await Promise.all([modelGroups(), listAll("/v1/files?purpose=fine-tune")]);
      const model = h("select", { id: "ft-model" }, groups.base.map((m) => h("option", { value: m.id }, m.id)));
      const training = h("select", { id: "ft-file" }, files.slice().reverse().map((f) => h("option", { value: f.id }, `${f.filename} (${f.id})`)));
      if (chosenFile) training.value = chosenFile;
      const epochs = numberInput("ft-epochs", 3, { min: 1, max: 50 });
      const batch = numberInput("ft-batch", 2, { min: 1, max: 256 });
      const lr = numberInput("ft-lr", 1, { min: 0.01, max: 100, step: "any" });
      const rank = numberInput("ft-rank", 8, { min: 1, max: 256 });
      const seqLen = numberInput("ft-seq", 256, { min: 16, max: 8192 });
      const suffix = h("input", { type: "text", id: "ft-suffix", maxlength: 40, placeholder: "optional" });
      const error = h("div");
      replace(createCard, h("h2", {}, "New job"), h("form", { onsubmit: async (e) => {
        e.preventDefault();
        replace(error);
        try {
          const job = await api("POST", "/v1/fine_tuning/jobs", {
            model: model.value, training_file: training.value, suffix: suffix.value || undefined,
            hyperparameters: { n_epochs: Number(epochs.value), batch_size: Number(batch.value), learning_rate_multiplier: Number(lr.value) },
            lora: { r: Number(rank.value) }, max_seq_length: Number(seqLen.value),
          });
          selected = job.id;
          follow = null;
          await loadJobs();
        } catch (err) { replace(error, errorText(err)); }
      } }, field("Base model", model), field("Training file", training),
      h("div", { class: "cols2" }, h("div", {}, field("Epochs", epochs)), h("div", {}, field("Batch size", batch)),
        h("div", {}, field("Learning-rate multiplier", lr)), h("div", {}, field("LoRA rank", rank)),
        h("div", {}, field("Max sequence length", seqLen)), h("div", {}, field("Suffix", suffix))),
      h("div", { class: "row" }, h("button", { type: "submit", id: "ft-create", disabled: !files.length }, "Start training")), error));
    } catch (err) { replace(createCard, errorText(err)); }
  }

  // Jobs and the selected one.
  async function loadJobs() {
    clearTimeout(timer);
    try {
      const page = await api("GET", "/v1/fine_tuning/jobs?limit=20");
      if (!selected && page.data.length) selected = page.data[0].id;
      replace(jobsCard, h("h2", {}, "Jobs"), page.data.length ? table([
        ["Job", (j) => h("div", {}, j.fine_tuned_model || j.user_provided_suffix || j.model, h("div", { class: "mono muted" }, j.id))],
        ["Status", (j) => statusBadge(j.status)],
        ["Created", (j) => when(j.created_at)],
      ], page.data, { onRow: (j) => { selected = j.id; follow = null; loadJobs(); }, selected, key: (j) => j.id }) : h("p", { class: "muted" }, "No job yet."));
      if (selected) await showJob(selected);
    } catch (err) { replace(jobsCard, errorText(err)); }
  }

  async function showJob(jobId) {
    const job = await api("GET", path("/v1/fine_tuning/jobs", jobId));
    if (!follow || follow.jobId !== jobId) follow = { jobId, after: "", train: [], evaluation: [], messages: [] };
    for (;;) { // every event since the last one seen
      const q = `?limit=1000${follow.after ? `&after=${encodeURIComponent(follow.after)}` : ""}`;
      const page = await api("GET", path("/v1/fine_tuning/jobs", jobId, "events") + q);
      for (const ev of page.data) {
        const d = ev.data || {};
        if (ev.type === "metrics" && d.train_loss !== undefined) follow.train.push([d.step, d.train_loss]);
        else if (ev.type === "metrics" && d.eval_loss !== undefined) follow.evaluation.push([d.step, d.eval_loss]);
        else follow.messages.push(ev);
      }
      if (page.data.length) follow.after = page.data[page.data.length - 1].id;
      if (!page.has_more) break;
    }
    const checkpoints = await api("GET", path("/v1/fine_tuning/jobs", jobId, "checkpoints"));
    const cancel = h("button", { class: "danger", id: "ft-cancel", disabled: FINAL.has(job.status), onclick: async () => {
      try { await api("POST", path("/v1/fine_tuning/jobs", jobId, "cancel")); await loadJobs(); } catch (err) { append(detail, errorText(err)); }
    } }, "Cancel");
    const series = [{ name: "training loss", points: follow.train }];
    if (follow.evaluation.length) series.push({ name: "eval loss", points: follow.evaluation });
    replace(detail,
      h("div", { class: "card" }, h("h2", {}, job.id), h("p", {}, statusBadge(job.status), job.fine_tuned_model ? [" · ", h("span", { class: "mono" }, job.fine_tuned_model)] : "",
        job.error && job.error.message ? h("span", { class: "error" }, ` · ${job.error.message}`) : ""), h("div", { class: "row" }, cancel)),
      h("div", { class: "card" }, h("h2", {}, "Loss"), lineChart(series, { xLabel: "step", yLabel: "loss", id: "ft-chart" })),
      h("div", { class: "card" }, h("h2", {}, "Checkpoints"), checkpoints.data.length ? table([
        ["Step", (c) => String(c.step_number)],
        ["Checkpoint", (c) => h("span", { class: "mono" }, c.fine_tuned_model_checkpoint)],
        ["Saved", (c) => when(c.created_at)],
      ], checkpoints.data) : h("p", { class: "muted" }, "None yet.")),
      h("div", { class: "card" }, h("h2", {}, "Events"), h("ul", { id: "ft-events" }, follow.messages.slice(-12).map((ev) => h("li", {}, h("span", { class: "muted" }, `${when(ev.created_at)} `), ev.message)))));
    if (!FINAL.has(job.status)) timer = setTimeout(() => loadJobs(), POLL_MS);
  }

  loadCreate();
  loadJobs();
  return () => clearTimeout(timer);
}
