// Models and aliases: what the tenant can call (the base model, its adapters, its aliases) and the
// promotions that moved each alias.

import { api, path } from "../api.js";
import { append, errorText, h, replace, statusBadge, table, when } from "../dom.js";

export function render(view) {
  const modelsCard = h("div", { class: "card" }, h("p", { class: "muted" }, "Loading…"));
  const aliasesCard = h("div", { class: "card" });
  const promotions = h("div", { class: "card", id: "promotions" });
  append(view, h("h1", {}, "Models and aliases"), modelsCard, h("div", { class: "cols2" }, aliasesCard, promotions));

  async function showPromotions(alias) {
    try {
      const page = await api("GET", path("/v1/aliases", alias, "promotions"));
      replace(promotions, h("h2", {}, `Promotions of ${alias}`), page.data.length ? table([
        ["When", (p) => when(p.created_at)],
        ["Candidate", (p) => h("span", { class: "mono" }, p.candidate)],
        ["Scores", (p) => `${p.candidate_score.toFixed(1)} vs ${p.holder_score === null ? "–" : p.holder_score.toFixed(1)} (${p.metric})`],
        ["Decision", (p) => statusBadge(p.promoted ? "completed" : "failed")],
        ["Reason", (p) => p.reason],
      ], page.data) : h("p", { class: "muted" }, "No promotion recorded."));
    } catch (err) { replace(promotions, errorText(err)); }
  }

  async function load() {
    try {
      const [models, aliases] = await Promise.all([api("GET", "/v1/models"), api("GET", "/v1/aliases")]);
      const kind = (m) => (m.kind === "embedding" ? "embedding" : m.alias_for ? "alias" : m.parent ? "adapter" : "base");
      replace(modelsCard, h("h2", {}, "Models"), table([
        ["Model", (m) => h("span", { class: "mono" }, m.id)],
        ["Kind", kind],
        ["Base / target", (m) => m.alias_for || m.parent || ""],
        ["Context", (m) => (m.max_model_len ? String(m.max_model_len) : "")],
        ["Owner", (m) => m.owned_by],
      ], models.data, { key: (m) => m.id }));
      replace(aliasesCard, h("h2", {}, "Aliases"), aliases.data.length ? table([
        ["Alias", (a) => h("span", { class: "mono" }, a.id)],
        ["Held by", (a) => h("span", { class: "mono" }, a.model)],
        ["Score", (a) => `${a.score.toFixed(1)} ${a.metric}`],
        ["Moved", (a) => when(a.updated_at)],
        ["", (a) => h("button", { class: "danger", type: "button", onclick: async (e) => {
          e.stopPropagation();
          if (!window.confirm(`Delete the alias ${a.id}?`)) return;
          try { await api("DELETE", path("/v1/aliases", a.id)); load(); } catch (err) { append(aliasesCard, errorText(err)); }
        } }, "Delete")],
      ], aliases.data, { onRow: (a) => showPromotions(a.id), key: (a) => a.id }) : h("p", { class: "muted" }, "No alias yet: an evaluation with promote sets one."));
      replace(promotions, h("h2", {}, "Promotions"), h("p", { class: "muted" }, "Choose an alias to see the decisions that moved it."));
    } catch (err) { replace(modelsCard, errorText(err)); }
  }

  load();
  return null;
}
