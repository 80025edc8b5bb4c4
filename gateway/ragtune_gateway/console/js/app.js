// The console's shell: sign-in with an API key (kept in sessionStorage for this tab only), the
// navigation, and one page at a time (#playground, #traffic, #loop, #knowledge, #fine-tuning, #evaluations, #models).

import { api, ApiError, session } from "./api.js";
import { errorText, field, h, replace } from "./dom.js";
import * as evaluations from "./pages/evaluations.js";
import * as fineTuning from "./pages/fine_tuning.js";
import * as knowledge from "./pages/knowledge.js";
import * as loop from "./pages/loop.js";
import * as models from "./pages/models.js";
import * as playground from "./pages/playground.js";
import * as traffic from "./pages/traffic.js";

const PAGES = [
  ["playground", "Playground", playground],
  ["traffic", "Traffic", traffic],
  ["loop", "Distill & promote", loop],
  ["knowledge", "Knowledge", knowledge],
  ["fine-tuning", "Fine-tuning", fineTuning],
  ["evaluations", "Evaluations", evaluations],
  ["models", "Models and aliases", models],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const sessionBox = document.getElementById("session");
let leave = null; // the current page's clean-up (stops its polling)

function signIn(message) {
  replace(nav);
  replace(sessionBox);
  const key = h("input", { type: "password", id: "api-key", autocomplete: "off", placeholder: "rt-…" });
  const error = h("div");
  const form = h(
    "form",
    {
      class: "card signin",
      id: "signin",
      onsubmit: async (event) => {
        event.preventDefault();
        session.set(key.value.trim());
        try {
          await api("GET", "/v1/files?limit=1"); // checks the key; needs no model server up
          route();
        } catch (e) {
          session.clear();
          replace(error, errorText(e instanceof ApiError && e.status === 401 ? new Error("That key is not valid.") : e));
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "An API key of your tenant: ", h("span", { class: "mono" }, "ragtune keys create --tenant <id>"), " makes one (", h("span", { class: "mono" }, "make run"), " wrote the default tenant's to .ragtune/gateway/credentials.json). It stays in this tab only."),
    field("API key", key),
    h("div", { class: "row" }, h("button", { type: "submit", id: "signin-submit" }, "Sign in")),
    error,
  );
  if (message) replace(error, errorText(new Error(message)));
  replace(main, form);
  key.focus();
}

function route() {
  if (leave) { leave(); leave = null; }
  if (!session.key) { signIn(); return; }
  const name = location.hash.slice(1) || "playground";
  const page = PAGES.find(([id]) => id === name) || PAGES[0];
  replace(nav, PAGES.map(([id, title]) => h("a", { href: `#${id}`, id: `nav-${id}`, class: id === page[0] ? "active" : "" }, title)));
  replace(sessionBox, h("span", {}, "signed in"), h("button", { class: "secondary", id: "signout", onclick: () => { session.clear(); route(); } }, "Sign out"));
  replace(main);
  const view = h("section", { id: `page-${page[0]}` });
  main.append(view);
  leave = page[2].render(view, {
    unauthorized: () => { session.clear(); signIn("The key was refused; sign in again."); },
  }) || null;
}

window.addEventListener("hashchange", route);
route();
