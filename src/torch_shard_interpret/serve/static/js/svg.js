// Inline SVG helpers: colour scales, heatmaps with hover tooltips, small bar charts.

const NS = "http://www.w3.org/2000/svg";

export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Show a token with its whitespace visible: leading space as "␣", newline as "↵".
export function showTok(t, limit = 0) {
  let s = String(t).replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "␣");
  if (limit && s.length > limit) s = s.slice(0, limit - 1) + "…";
  return s;
}

function lerp(a, b, t) { return a.map((x, i) => Math.round(x + (b[i] - x) * t)); }
const WHITE = [255, 255, 255], BLUE = [33, 102, 172], RED = [178, 24, 43];
const SEQ = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;

export function sequential(t) {
  t = Math.max(0, Math.min(1, t || 0)) * (SEQ.length - 1);
  const i = Math.min(Math.floor(t), SEQ.length - 2);
  return rgb(lerp(SEQ[i], SEQ[i + 1], t - i));
}

export function diverging(v, vmax) {
  const t = vmax > 0 ? Math.max(-1, Math.min(1, v / vmax)) : 0;
  return rgb(t >= 0 ? lerp(WHITE, BLUE, t) : lerp(WHITE, RED, -t));
}

export function textOn(fill) {
  const m = fill.match(/\d+/g).map(Number);
  return 0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2] < 140 ? "#fff" : "#1d2430";
}

function el(tag, attrs = {}, text = null) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}

const tooltip = () => document.getElementById("tooltip");
export function showTip(evt, text) {
  const tip = tooltip();
  tip.textContent = text;
  tip.hidden = false;
  const x = Math.min(evt.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(evt.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}
export function hideTip() { tooltip().hidden = true; }

// A heatmap: values[r][c]; color(v) -> fill; label(r, c) -> text in the cell; tip(r, c) -> tooltip text.
export function heatmap({ rows, cols, values, color, label = null, tip = null, cell = [54, 22], colTitle = "", rowTitle = "", onClick = null, className = "cell" }) {
  const [cw, ch] = cell;
  const axes = rows.some((r) => String(r)) || cols.some((c) => String(c));
  const left = axes ? Math.max(60, 7.5 * Math.max(...rows.map((r) => String(r).length)) + 12) : 2;
  const top = axes ? 70 : 2;
  const width = left + cw * cols.length + 10;
  const height = top + ch * rows.length + (axes ? 24 : 4);
  const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (colTitle) svg.appendChild(el("text", { x: left, y: 12, "font-size": 11, fill: "#667085" }, colTitle));
  if (rowTitle) svg.appendChild(el("text", { x: 4, y: top - 6, "font-size": 11, fill: "#667085" }, rowTitle));
  cols.forEach((c, j) => {
    const x = left + j * cw + cw / 2, y = top - 6;
    svg.appendChild(el("text", { x, y, "font-size": 11, "text-anchor": "start", transform: `rotate(-40 ${x} ${y})`, fill: "#1d2430" }, showTok(c, 14)));
  });
  rows.forEach((r, i) => {
    svg.appendChild(el("text", { x: left - 6, y: top + i * ch + ch / 2 + 4, "font-size": 11, "text-anchor": "end", fill: "#1d2430" }, String(r)));
  });
  const g = el("g");
  values.forEach((row, i) => row.forEach((v, j) => {
    const fill = color(v, i, j);
    const rect = el("rect", { x: left + j * cw, y: top + i * ch, width: cw - 1, height: ch - 1, fill, class: className, "data-row": i, "data-col": j });
    if (tip) {
      rect.addEventListener("mousemove", (e) => showTip(e, tip(i, j)));
      rect.addEventListener("mouseleave", hideTip);
    }
    if (onClick) { rect.style.cursor = "pointer"; rect.addEventListener("click", () => onClick(i, j)); }
    g.appendChild(rect);
    if (label) {
      const t = label(i, j);
      if (t) {
        const txt = el("text", { x: left + j * cw + cw / 2, y: top + i * ch + ch / 2 + 4, "font-size": 10.5, "text-anchor": "middle", fill: textOn(fill), "pointer-events": "none" }, showTok(t, Math.floor(cw / 7)));
        g.appendChild(txt);
      }
    }
  }));
  svg.appendChild(g);
  return svg;
}

// A horizontal colour bar legend.
export function legend(color, lo, hi, title) {
  const w = 220, svg = el("svg", { width: Math.max(w + 120, 6.4 * title.length + 60), height: 34 });
  for (let i = 0; i < 44; i++) {
    const v = lo + (hi - lo) * (i / 43);
    svg.appendChild(el("rect", { x: 40 + i * 5, y: 4, width: 5, height: 10, fill: color(v) }));
  }
  svg.appendChild(el("text", { x: 36, y: 13, "font-size": 10, "text-anchor": "end", fill: "#667085" }, fmt(lo)));
  svg.appendChild(el("text", { x: 44 + w, y: 13, "font-size": 10, fill: "#667085" }, fmt(hi)));
  svg.appendChild(el("text", { x: 40, y: 29, "font-size": 10.5, fill: "#667085" }, title));
  return svg;
}

// Grouped vertical bars per layer: series = [{name, values, color}].
export function layerBars(series, { title = "", height = 180 } = {}) {
  const n = series[0].values.length, bw = Math.max(6, Math.min(16, 480 / n / series.length));
  const gw = bw * series.length + 6, left = 50, top = 20, W = left + gw * n + 140;
  const all = series.flatMap((s) => s.values);
  const vmax = Math.max(1e-9, ...all.map(Math.abs));
  const mid = top + height / 2, scale = (height / 2 - 4) / vmax;
  const svg = el("svg", { width: W, height: top + height + 34 });
  svg.appendChild(el("text", { x: left, y: 12, "font-size": 11, fill: "#667085" }, title));
  svg.appendChild(el("line", { x1: left, x2: left + gw * n, y1: mid, y2: mid, stroke: "#98a2b3" }));
  svg.appendChild(el("text", { x: left - 6, y: top + 8, "font-size": 10, "text-anchor": "end", fill: "#667085" }, `+${fmt(vmax)}`));
  svg.appendChild(el("text", { x: left - 6, y: top + height, "font-size": 10, "text-anchor": "end", fill: "#667085" }, `-${fmt(vmax)}`));
  for (let i = 0; i < n; i++) {
    series.forEach((s, k) => {
      const v = s.values[i], h = Math.abs(v) * scale;
      const r = el("rect", { x: left + i * gw + k * bw, y: v >= 0 ? mid - h : mid, width: bw - 1, height: Math.max(h, 0.5), fill: s.color });
      r.addEventListener("mousemove", (e) => showTip(e, `layer ${i} ${s.name}: ${fmt(v)}`));
      r.addEventListener("mouseleave", hideTip);
      svg.appendChild(r);
    });
    if (n <= 40 && (n <= 16 || i % 2 === 0)) svg.appendChild(el("text", { x: left + i * gw + gw / 2 - 3, y: top + height + 14, "font-size": 10, "text-anchor": "middle", fill: "#667085" }, String(i)));
  }
  svg.appendChild(el("text", { x: left + (gw * n) / 2, y: top + height + 30, "font-size": 10.5, "text-anchor": "middle", fill: "#667085" }, "layer"));
  series.forEach((s, k) => {
    svg.appendChild(el("rect", { x: left + gw * n + 16, y: top + k * 18, width: 10, height: 10, fill: s.color }));
    svg.appendChild(el("text", { x: left + gw * n + 32, y: top + k * 18 + 9, "font-size": 11, fill: "#1d2430" }, s.name));
  });
  return svg;
}

// A histogram from {edges, counts}.
export function histogram(h, { width = 320, height = 110, title = "" } = {}) {
  const svg = el("svg", { width, height: height + 34 });
  const n = h.counts.length, max = Math.max(1, ...h.counts), bw = (width - 40) / Math.max(n, 1);
  h.counts.forEach((c, i) => {
    const bh = (c / max) * (height - 10);
    const r = el("rect", { x: 30 + i * bw, y: height - bh, width: bw - 1, height: bh, fill: "#4393c3" });
    r.addEventListener("mousemove", (e) => showTip(e, `${fmt(h.edges[i])} – ${fmt(h.edges[i + 1])}: ${c} tokens`));
    r.addEventListener("mouseleave", hideTip);
    svg.appendChild(r);
  });
  svg.appendChild(el("line", { x1: 30, x2: width - 10, y1: height, y2: height, stroke: "#98a2b3" }));
  if (n) {
    svg.appendChild(el("text", { x: 30, y: height + 13, "font-size": 10, fill: "#667085" }, "0"));
    svg.appendChild(el("text", { x: width - 10, y: height + 13, "font-size": 10, "text-anchor": "end", fill: "#667085" }, fmt(h.edges[n])));
  }
  svg.appendChild(el("text", { x: 30, y: height + 28, "font-size": 10.5, fill: "#667085" }, title));
  return svg;
}

export function fmt(x, d = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return x.toExponential(1);
  return Number(x.toPrecision(d)).toString();
}
