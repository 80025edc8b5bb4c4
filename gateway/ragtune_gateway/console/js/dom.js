// Building the page from data: every string becomes a text node (never HTML), so nothing the API
// returns can run as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "text") el.textContent = String(value);
    else if (name === "value") el.value = value;
    else if (name === "checked") el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  appendAll(el, children);
  return el;
}

/** Append strings (as text), nodes and arrays of them; null, undefined and false are skipped. */
export function append(el, ...children) {
  return appendAll(el, children);
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("td", {class: "mono"}, text, ...): an HTML element. */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** s("circle", {cx, cy, r}): an SVG element. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return appendAll(el, children);
}

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

export function statusBadge(status) {
  return h("span", { class: `status ${status}`, "data-status": status }, status);
}

/** A <table> of rows: columns are [heading, row => cell]; onRow(row, tr) makes rows clickable. */
export function table(columns, rows, { onRow, selected, key } = {}) {
  const head = h("tr", {}, columns.map(([title]) => h("th", {}, title)));
  const body = rows.map((row) => {
    const tr = h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))));
    if (onRow) {
      tr.classList.add("clickable");
      tr.addEventListener("click", () => onRow(row, tr));
    }
    if (key) tr.dataset.key = key(row);
    if (selected && key && key(row) === selected) tr.classList.add("selected");
    return tr;
  });
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

/** A field with its label: field("Top k", input). */
export function field(label, control) {
  return [h("label", { for: control.id || undefined }, label), control];
}

export function errorText(error) {
  return h("p", { class: "error", role: "alert" }, error && error.message ? error.message : String(error));
}
