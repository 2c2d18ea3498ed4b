// tsi serve: the single-page app. Each tab renders one endpoint of the JSON API as inline SVG / HTML.
import { get, post, job } from "./api.js";
import { $, busy, progressBar, showError } from "./ui.js";
import { diverging, esc, fmt, heatmap, hideTip, histogram, layerBars, legend, sequential, showTip, showTok } from "./svg.js";

let INFO = null;
const lastRun = {}; // tab -> prompt it last rendered
const PROMPT_TABS = new Set(["predict", "lens", "attention", "dla"]);

const prompt = () => $("prompt").value;
const activeTab = () => document.querySelector("nav button.active").dataset.tab;

// ---- tabs ---------------------------------------------------------------------------------------
function activate(tab) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === `tab-${tab}`));
  $("prompt-bar").hidden = !PROMPT_TABS.has(tab);
  history.replaceState(null, "", `#${tab}`);
  if (PROMPT_TABS.has(tab) && lastRun[tab] !== prompt()) runTab(tab);
}

function runTab(tab) {
  const fn = { predict: runPredict, lens: runLens, attention: runAttention, dla: runDla }[tab];
  if (fn) return busy($("run-prompt"), async () => { await fn(); lastRun[tab] = prompt(); });
}

// ---- predictions --------------------------------------------------------------------------------
function topTable(items, title) {
  const max = Math.max(...items.map((t) => t.prob));
  return `<h3>${esc(title)}</h3><table class="top"><tr><th>#</th><th>token</th><th>prob</th><th></th><th>logit</th></tr>` +
    items.map((t, i) => `<tr><td>${i + 1}</td><td>${esc(showTok(t.token))}</td><td>${t.prob.toFixed(4)}</td>` +
      `<td><span class="bar" style="width:${Math.round((t.prob / max) * 160)}px"></span></td><td>${fmt(t.logit)}</td></tr>`).join("") + "</table>";
}

async function runPredict() {
  const r = await post("/api/run", { prompt: prompt(), top_k: 10 });
  const box = $("predict-tokens");
  box.innerHTML = "";
  const select = (i) => {
    box.querySelectorAll(".tok").forEach((t, j) => t.classList.toggle("sel", i === j));
    const before = r.tokens.slice(0, i + 1).map((t) => t.text).join("");
    $("predict-detail").innerHTML = topTable(r.predictions[i], `after “${before.length > 60 ? "…" + before.slice(-60) : before}”`);
  };
  r.tokens.forEach((t, i) => {
    const top = r.predictions[i][0];
    const d = document.createElement("div");
    d.className = "tok";
    d.innerHTML = `<span class="t">${esc(showTok(t.text))}</span><span class="p">→ ${esc(showTok(top.token, 10))} ${(top.prob * 100).toFixed(0)}%</span>`;
    d.title = `token id ${t.id}`;
    d.addEventListener("click", () => select(i));
    box.appendChild(d);
  });
  select(r.tokens.length - 1);
}

// ---- logit lens ---------------------------------------------------------------------------------
async function runLens() {
  const target = $("lens-target").value;
  const r = await post("/api/lens", { prompt: prompt(), target: target || null, top_k: 5 });
  const fig = $("lens-heatmap");
  fig.innerHTML = "";
  const rows = r.layers.map((n) => n.replace(".resid_post", "").replace("blocks.", "L"));
  const svg = heatmap({
    rows, cols: r.tokens.map((t) => t.text), values: r.value,
    color: (v) => sequential(v), className: "cell lens-cell",
    label: (i, j) => r.top[i][j][0].token,
    tip: (i, j) => `${r.layers[i]} · position ${j} (${showTok(r.tokens[j].text)})\n` +
      (r.rank ? `${showTok(r.target.token)}: p=${fmt(r.value[i][j])}, rank ${r.rank[i][j]}\n` : "") +
      r.top[i][j].map((t, k) => `${k + 1}. ${showTok(t.token).padEnd(14)} ${t.prob.toFixed(4)}`).join("\n"),
    cell: [Math.max(46, Math.min(80, 900 / r.tokens.length)), 20],
    colTitle: "input token (the lens predicts the next one)", rowTitle: "after block",
  });
  svg.id = "lens-svg";
  fig.appendChild(svg);
  fig.appendChild(legend(sequential, 0, 1, r.value_label));
}

// ---- attention ----------------------------------------------------------------------------------
async function runAttention() {
  if (!INFO.attention.enabled) { $("attn-view").innerHTML = `<p class="empty">${esc(INFO.attention.note)}</p>`; return; }
  const layer = Number($("attn-layer").value || 0);
  const r = await post("/api/attention", { prompt: prompt(), layer });
  const headSel = $("attn-head");
  if (headSel.options.length !== r.patterns.length + 1) {
    headSel.innerHTML = `<option value="all">all heads</option>` + r.patterns.map((_, h) => `<option value="${h}">head ${h}</option>`).join("");
  }
  drawAttention(r);
}

function drawAttention(r) {
  const view = $("attn-view");
  view.innerHTML = "";
  const toks = r.tokens.map((t) => t.text);
  const tip = (h) => (i, j) => `L${r.layer} H${h}\nquery ${i} ${showTok(toks[i])}\n → key ${j} ${showTok(toks[j])}\nweight ${r.patterns[h][i][j].toFixed(4)}`;
  const head = $("attn-head").value;
  if (head === "all") {
    const wrap = document.createElement("div");
    wrap.style.cssText = "display:flex;flex-wrap:wrap;gap:14px";
    const cell = Math.max(3, Math.min(14, Math.floor(180 / toks.length)));
    r.patterns.forEach((pat, h) => {
      const box = document.createElement("div");
      box.innerHTML = `<div class="hint">head ${h}</div>`;
      box.style.cursor = "pointer";
      const svg = heatmap({ rows: toks.map(() => ""), cols: toks.map(() => ""), values: pat, color: (v) => sequential(v), tip: tip(h), cell: [cell, cell], className: "cell attn-cell" });
      svg.addEventListener("click", () => { $("attn-head").value = String(h); drawAttention(r); });
      box.appendChild(svg);
      wrap.appendChild(box);
    });
    view.appendChild(wrap);
    view.insertAdjacentHTML("beforeend", `<p class="hint">Rows: query (the token attending); columns: key. Click a head to enlarge.</p>`);
  } else {
    const h = Number(head);
    const cell = Math.max(16, Math.min(40, Math.floor(700 / toks.length)));
    view.appendChild(heatmap({ rows: toks.map((t, i) => `${showTok(t, 12)} ${i}`), cols: toks, values: r.patterns[h], color: (v) => sequential(v), tip: tip(h), cell: [cell, cell], rowTitle: "query", colTitle: "key", className: "cell attn-cell" }));
    view.appendChild(legend(sequential, 0, 1, "attention weight"));
  }
}

// ---- direct logit attribution -------------------------------------------------------------------
async function runDla() {
  const r = await post("/api/dla", { prompt: prompt(), target: $("dla-target").value || null, baseline: $("dla-baseline").value || null });
  const view = $("dla-view");
  view.innerHTML = `<p><b>${esc(r.label)}</b> at position ${r.position} = <b>${fmt(r.total, 4)}</b>` +
    ` = embed ${fmt(r.per_layer.embed)} + Σ attention ${fmt(r.per_layer.attn.reduce((a, b) => a + b, 0))}` +
    ` + Σ MLP ${fmt(r.per_layer.mlp.reduce((a, b) => a + b, 0))} + remainder ${fmt(r.remainder)}</p>`;
  view.appendChild(layerBars([
    { name: "attention", values: r.per_layer.attn, color: "#2166ac" },
    { name: "MLP", values: r.per_layer.mlp, color: "#e08214" },
  ], { title: "direct contribution of each block's attention and MLP" }));
  const vmax = Math.max(1e-9, ...r.heads.flat().map(Math.abs));
  const h3 = document.createElement("h3");
  h3.textContent = "per attention head (blue: towards the target, red: against)";
  view.appendChild(h3);
  view.appendChild(heatmap({
    rows: r.heads.map((_, i) => `L${i}`), cols: r.heads[0].map((_, j) => `H${j}`), values: r.heads,
    color: (v) => diverging(v, vmax), tip: (i, j) => `L${i} H${j}: ${fmt(r.heads[i][j], 4)}`,
    label: (i, j) => (Math.abs(r.heads[i][j]) > 0.35 * vmax ? fmt(r.heads[i][j], 2) : ""),
    cell: [40, 16], className: "cell dla-cell",
  }));
  view.appendChild(legend((v) => diverging(v, vmax), -vmax, vmax, "contribution to the logit (difference)"));
  view.insertAdjacentHTML("beforeend", topTableComponents(r.top_components));
}

function topTableComponents(items) {
  const max = Math.max(...items.map(([, v]) => Math.abs(v)));
  return `<h3>largest components</h3><table class="top">` + items.map(([k, v]) =>
    `<tr><td>${esc(k)}</td><td>${fmt(v, 4)}</td><td><span class="bar ${v < 0 ? "neg" : ""}" style="width:${Math.round((Math.abs(v) / max) * 160)}px"></span></td></tr>`).join("") + "</table>";
}

// ---- steering -----------------------------------------------------------------------------------
async function runSteer() {
  const layer = Number($("steer-layer").value);
  const site = `blocks.${layer}.resid_pre`;
  const src = document.querySelector("input[name=steer-src]:checked").value;
  const params = { prompt: $("steer-prompt").value, scale: Number($("steer-scale").value), max_new_tokens: Number($("steer-n").value) };
  if (src === "saved") Object.assign(params, { vector_name: $("steer-saved").value, apply_site: site });
  else Object.assign(params, { positive: $("steer-pos").value, negative: $("steer-neg").value, site });
  const out = $("steer-out");
  out.innerHTML = `<div class="gen"><div class="hint">generating…</div></div>`;
  const r = await job("steer", params, (f, m) => (out.querySelector(".hint") && (out.querySelector(".hint").textContent = m)));
  const p = `<span class="prompt">${esc(r.prompt)}</span>`;
  out.innerHTML = `<div class="gen" id="steer-unsteered"><h3>Unsteered</h3><div class="text">${p}${esc(r.unsteered)}</div></div>` +
    `<div class="gen steered" id="steer-steered"><h3>Steered · ${esc(r.site)} · scale ${r.scale}</h3><div class="text">${p}${esc(r.steered)}</div>` +
    `<div class="meta">vector norm ${fmt(r.vector_norm)} · added at every position</div></div>`;
}

// ---- activation patching ------------------------------------------------------------------------
async function runPatch() {
  const params = { clean: $("patch-clean").value, corrupt: $("patch-corrupt").value, target: $("patch-target").value || null, baseline: $("patch-baseline").value || null, sites: $("patch-sites").value };
  const r = await job("patch", params, progressBar($("patch-progress")));
  const view = $("patch-view");
  view.innerHTML = `<p><b>metric</b> ${esc(r.metric)}: clean ${fmt(r.clean_metric)}, corrupted ${fmt(r.corrupt_metric)}</p>`;
  const vmax = Math.max(1, ...r.effects.flat().map(Math.abs));
  view.appendChild(heatmap({
    rows: r.sites.map((s) => s.replace("blocks.", "L")), cols: r.columns.map((c) => c.replace(/^\d+:/, "").replace(/'([^']*)'/g, "$1")), values: r.effects,
    color: (v) => diverging(v, vmax), tip: (i, j) => `${r.sites[i]} @ ${r.columns[j]}\neffect ${fmt(r.effects[i][j], 4)}`,
    label: (i, j) => (Math.abs(r.effects[i][j]) >= 0.1 ? r.effects[i][j].toFixed(2) : ""),
    cell: [Math.max(40, Math.min(70, 900 / r.columns.length)), 18], className: "cell patch-cell",
    colTitle: "position (clean / corrupted token)",
  }));
  view.appendChild(legend((v) => diverging(v, vmax), -vmax, vmax, r.normalisation));
}

// ---- SAE browser --------------------------------------------------------------------------------
const saeName = () => $("sae-select").value;
const prepared = {};

async function prepareSae() {
  const name = saeName();
  if (!name) throw new Error("this server was started without SAEs: use tsi serve --sae DIR");
  if (!prepared[name]) {
    const s = await job("sae_prepare", { sae: name }, progressBar($("sae-progress")));
    prepared[name] = s;
    $("sae-summary").innerHTML = `${esc(s.name)} reads <code>${esc(s.site)}</code> · ${s.d_sae} latents (${s.alive_latents} fire on the corpus) · ` +
      `${s.n_tokens} tokens of the ${esc(s.corpus)}. Most frequent: ` +
      s.most_frequent.slice(0, 8).map((m) => `<span class="chip" data-latent="${m.latent}">#${m.latent} ${(m.frequency * 100).toFixed(1)}%</span>`).join(" ");
    bindChips($("sae-summary"));
  }
}

function bindChips(root) {
  root.querySelectorAll("[data-latent]").forEach((c) => c.addEventListener("click", () => { $("sae-latent").value = c.dataset.latent; openLatent(); }));
}

async function openLatent() {
  await busy($("sae-open"), async () => {
    await prepareSae();
    const r = await get(`/api/saes/${encodeURIComponent(saeName())}/latents/${Number($("sae-latent").value)}`);
    const view = $("sae-view");
    const max = Math.max(r.max_activation, 1e-9);
    const ctx = r.top_contexts.map((c) => `<div class="ctx"><span class="val">${fmt(c.activation)}</span>` + c.tokens.map((t, i) => {
      const a = Math.max(0, c.acts[i]) / max;
      const style = a > 0 ? `background:rgba(230,120,20,${(0.15 + 0.85 * a).toFixed(2)})` : "";
      return `<span style="${style}${i === c.max_index ? ";outline:1px solid #8a4a0b" : ""}" data-tip="${esc(`${showTok(t)}: ${fmt(c.acts[i])}`)}">${esc(t)}</span>`;
    }).join("") + "</div>").join("") || `<p class="empty">never active on this corpus</p>`;
    const chips = (xs, neg) => xs.map((x) => `<span class="chip ${neg ? "neg" : ""}">${esc(showTok(x.token))} ${x.value > 0 ? "+" : ""}${fmt(x.value)}</span>`).join("") || `<span class="empty">none</span>`;
    view.innerHTML = `<h3 id="sae-latent-title">Latent #${r.latent} <span class="hint">${esc(r.sae)} · ${esc(r.site)} · fires on ${(r.frequency * 100).toFixed(2)}% of ${r.n_tokens} tokens · max ${fmt(r.max_activation)}</span></h3>` +
      `<div class="sae-grid"><div><h3>Top activating contexts</h3>${ctx}</div><div><h3>Activation histogram (non-zero)</h3><div id="sae-hist"></div>` +
      `<h3>Logit effects (decoder direction × unembedding)</h3><div class="hint">promotes</div><div class="chips">${chips(r.logit_effects.positive, false)}</div>` +
      `<div class="hint" style="margin-top:.5rem">suppresses</div><div class="chips">${chips(r.logit_effects.negative, true)}</div></div></div>`;
    if (r.histogram.counts.length) $("sae-hist").appendChild(histogram(r.histogram, { title: "activation value" }));
    else $("sae-hist").innerHTML = `<p class="empty">no activations</p>`;
    view.querySelectorAll("[data-tip]").forEach((s) => { s.addEventListener("mousemove", (e) => showTip(e, s.dataset.tip)); s.addEventListener("mouseleave", hideTip); });
  });
}

async function searchSae() {
  await busy($("sae-search"), async () => {
    await prepareSae();
    const token = $("sae-token").value;
    const r = await get(`/api/saes/${encodeURIComponent(saeName())}/search?token=${encodeURIComponent(token)}`);
    const list = (xs, key) => xs.map((x) => `<span class="chip" data-latent="${x.latent}">#${x.latent} ${fmt(x[key])}</span>`).join("") || `<span class="empty">none</span>`;
    $("sae-results").innerHTML = `<h3>Latents for ${esc(showTok(r.token))} (id ${r.token_id}, ${r.occurrences} occurrences in the corpus)</h3>` +
      `<div class="hint">fire most on it (mean activation)</div><div class="chips">${list(r.firing, "mean_activation")}</div>` +
      `<div class="hint" style="margin-top:.4rem">promote it most (logit effect)</div><div class="chips">${list(r.promoting, "logit_effect")}</div>`;
    bindChips($("sae-results"));
  });
}

// ---- start-up -----------------------------------------------------------------------------------
async function init() {
  INFO = await get("/api/info");
  $("model-info").innerHTML = `<b>${esc(INFO.model)}</b> · ${esc(INFO.architecture || "?")} · ${INFO.n_layers} layers · ${INFO.n_heads} heads · d_model ${INFO.d_model}`;
  const layers = [...Array(INFO.n_layers).keys()];
  $("attn-layer").innerHTML = layers.map((i) => `<option value="${i}">${i}</option>`).join("");
  $("steer-layer").innerHTML = layers.map((i) => `<option value="${i}">${i}</option>`).join("");
  $("steer-layer").value = String(Math.floor(INFO.n_layers / 3));
  $("attn-note").textContent = INFO.attention.note;
  $("steer-saved").innerHTML = INFO.vectors.map((v) => `<option value="${esc(v.name)}">${esc(v.name)} (${esc(v.site)})</option>`).join("") || `<option value="">(none)</option>`;
  $("sae-select").innerHTML = INFO.saes.map((s) => `<option value="${esc(s.name)}">${esc(s.name)} · ${esc(s.site)} · ${s.d_sae}</option>`).join("") || `<option value="">(none: tsi serve --sae DIR)</option>`;
  if (!INFO.attention.enabled) document.querySelector('nav button[data-tab="attention"]').title = INFO.attention.note;

  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => activate(b.dataset.tab)));
  $("run-prompt").addEventListener("click", () => runTab(activeTab()));
  $("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runTab(activeTab()); } });
  $("lens-target").addEventListener("change", () => runTab("lens"));
  $("attn-layer").addEventListener("change", () => runTab("attention"));
  $("attn-head").addEventListener("change", () => runTab("attention"));
  $("dla-target").addEventListener("change", () => runTab("dla"));
  $("dla-baseline").addEventListener("change", () => runTab("dla"));
  $("steer-scale").addEventListener("input", () => ($("steer-scale-out").value = $("steer-scale").value));
  $("steer-saved").addEventListener("change", () => {
    document.querySelector("input[name=steer-src][value=saved]").checked = true;
    const v = INFO.vectors.find((x) => x.name === $("steer-saved").value);
    const m = v && v.site.match(/^blocks\.(\d+)\./);
    if (m) $("steer-layer").value = m[1];
  });
  $("steer-run").addEventListener("click", () => busy($("steer-run"), runSteer));
  $("patch-run").addEventListener("click", () => busy($("patch-run"), runPatch));
  $("sae-open").addEventListener("click", openLatent);
  $("sae-search").addEventListener("click", searchSae);
  $("sae-token").addEventListener("keydown", (e) => { if (e.key === "Enter") searchSae(); });
  const start = location.hash.slice(1);
  activate(document.querySelector(`nav button[data-tab="${start}"]`) ? start : "predict");
  document.body.dataset.ready = "1";
}

init().catch(showError);
