// The Circuits tab: edge attribution on a clean/corrupt pair as a job; the circuit's SVG and its faithfulness.
import { job } from "./api.js";
import { $, busy, progressBar, saveLink } from "./ui.js";
import { esc, fmt } from "./svg.js";

async function runCircuit() {
  const params = {
    clean: $("circ-clean").value, corrupt: $("circ-corrupt").value,
    target: $("circ-target").value || null, baseline: $("circ-baseline").value || null,
    method: $("circ-method").value, top: Number($("circ-top").value), steps: Number($("circ-steps").value),
    curve: $("circ-curve").checked,
  };
  const r = await job("circuits", params, progressBar($("circ-progress")));
  const view = $("circ-view");
  const d = r.faithfulness_detail;
  view.innerHTML = `<p id="circ-summary"><b>${r.edges}</b> of ${r.total_edges} edges, ${r.nodes.length} nodes · ${esc(r.method)} · ` +
    `metric ${esc(r.metric)} · faithfulness <b id="circ-faithfulness">${fmt(r.faithfulness, 3)}</b> ` +
    `<span class="hint">(m(C) ${fmt(d.m_circuit)}, m(M) ${fmt(d.m_full)}, m(∅) ${fmt(d.m_empty)}; ablation: ${esc(d.ablation)})</span></p>` +
    `<div class="circ-grid"><div id="circ-svg" class="figure">${r.svg}</div><div id="circ-side"></div></div>`;
  const side = $("circ-side");
  if (r.curve) {
    side.insertAdjacentHTML("beforeend", `<h3>Faithfulness curve</h3><div class="figure">${r.curve.chart}</div>` +
      `<p class="hint">CPR ${fmt(r.curve.cpr)} (higher is better) · CMD ${fmt(r.curve.cmd)} (0 is best)</p>`);
  }
  side.insertAdjacentHTML("beforeend", `<h3>Strongest edges of the circuit</h3><table class="top">` +
    r.top_edges.map(([e, v]) => `<tr><td>${esc(e)}</td><td>${fmt(v, 4)}</td></tr>`).join("") + "</table>");
  side.appendChild(saveLink(JSON.stringify({ edges: r.circuit_edges, method: r.method, metric: r.metric, faithfulness: d }, null, 1),
    "circuit-edges.json", "application/json", "Save the circuit's edges (JSON)"));
}

$("circ-run").addEventListener("click", () => busy($("circ-run"), runCircuit));
