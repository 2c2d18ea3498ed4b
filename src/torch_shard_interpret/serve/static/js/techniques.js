// One tab per registered technique (tsi.report.register_technique): GET /api/info lists them under
// `techniques`; each tab has a prompt, one input per option, and shows the section HTML the server rendered.
import { get, job } from "./api.js";
import { $, busy, progressBar } from "./ui.js";
import { esc } from "./svg.js";

function show(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === `tab-${name}`));
  $("prompt-bar").hidden = true;
  history.replaceState(null, "", `#${name}`);
}

function input(t, o) {
  const id = `tech-${t.name}-${o.name}`;
  const value = o.default === null ? "" : String(o.default);
  if (o.type === "bool") return `<label><input type="checkbox" id="${id}"${o.default ? " checked" : ""}> ${esc(o.name)}</label>`;
  const type = o.type === "int" || o.type === "float" ? "number" : "text";
  const step = o.type === "float" ? ' step="any"' : "";
  return `<label>${esc(o.name)} <input type="${type}"${step} id="${id}" value="${esc(value)}" size="14"></label>`;
}

function params(t) {
  const out = { prompt: $(`tech-${t.name}-prompt`).value };
  for (const o of t.options) {
    const el = $(`tech-${t.name}-${o.name}`);
    if (o.type === "bool") out[o.name] = el.checked;
    else if (el.value === "") continue;
    else out[o.name] = o.type === "int" || o.type === "float" ? Number(el.value) : el.value;
  }
  return out;
}

async function runTechnique(t) {
  const r = await job(t.name, params(t), progressBar($(`tech-${t.name}-progress`)));
  $(`tech-${t.name}-view`).innerHTML = r.section_html; // rendered and escaped by the server's primitives
}

function addTab(t) {
  const button = document.createElement("button");
  button.dataset.tab = t.name;
  button.textContent = t.title;
  button.addEventListener("click", () => show(t.name));
  $("tabs").appendChild(button);
  const section = document.createElement("section");
  section.id = `tab-${t.name}`;
  section.className = "tab";
  section.innerHTML = `<div class="card"><h2>${esc(t.title)}</h2><p class="hint">${esc(t.help)}</p>` +
    `<div class="controls"><textarea id="tech-${t.name}-prompt" rows="2" cols="60" spellcheck="false"></textarea>` +
    t.options.map((o) => input(t, o)).join("") +
    `<button id="tech-${t.name}-run" class="primary">Run ▸</button></div>` +
    `<div id="tech-${t.name}-progress"></div><div id="tech-${t.name}-view" class="figure"></div></div>`;
  $("error").before(section);
  $(`tech-${t.name}-prompt`).value = $("prompt").value;
  const run = $(`tech-${t.name}-run`);
  run.addEventListener("click", () => busy(run, () => runTechnique(t)));
}

async function init() {
  const info = await get("/api/info");
  (info.techniques || []).forEach(addTab);
  const start = location.hash.slice(1);
  if ((info.techniques || []).some((t) => t.name === start)) show(start);
}

init().catch(() => {}); // app.js shows the error of a failed /api/info
