// The Image tab: upload a PNG or JPEG, run the vision report as a job, show the report's page in a sandbox.
import { get, poll, upload } from "./api.js";
import { $, busy, progressBar, saveLink } from "./ui.js";
import { esc, fmt } from "./svg.js";

let LIMITS = null;

async function runImage() {
  const file = $("image-file").files[0];
  if (!file) throw new Error("choose a PNG or JPEG file first");
  // The server checks every upload by its bytes; the type sent is only what the browser says the file is.
  const type = file.type === "image/jpeg" ? "image/jpeg" : "image/png";
  const query = new URLSearchParams({ name: file.name, steps: $("image-steps").value });
  if ($("image-target").value !== "") query.set("target", $("image-target").value);
  const started = await upload(`/api/vision/job?${query}`, file, type);
  const r = await poll(started, progressBar($("image-progress")));
  const view = $("image-view");
  const flagged = r.flagged.length ? `flagged by the sanity check: ${r.flagged.map(esc).join(", ")}` : "no map flagged by the sanity check";
  view.innerHTML = `<p id="image-prediction"><b>${esc(r.name)}</b> (${esc(r.image.type)}, ${r.image.width}×${r.image.height}) · ` +
    `${esc(r.model)} predicts class <b>${r.prediction}</b> (p=${fmt(r.probability, 3)}) · explaining class ${r.target} · ${flagged}</p>`;
  const frame = document.createElement("iframe");
  frame.id = "image-report";
  frame.title = "vision report";
  frame.setAttribute("sandbox", ""); // no scripts, no navigation: the report is static HTML with inline images
  frame.srcdoc = r.html;
  view.appendChild(saveLink(r.html, `${r.name.replace(/\.[^.]*$/, "")}-vision-report.html`, "text/html", "Save the report (HTML)"));
  view.appendChild(frame);
}

async function init() {
  LIMITS = await get("/api/vision");
  $("image-limits").textContent = LIMITS.enabled
    ? `${LIMITS.model} · PNG or JPEG, at most ${(LIMITS.max_bytes / 2 ** 20).toFixed(1)} MiB and ${LIMITS.max_pixels.toLocaleString()} pixels`
    : LIMITS.note;
  $("image-steps").max = String(LIMITS.max_steps);
  $("image-steps").value = String(LIMITS.default_steps);
  $("image-run").disabled = !LIMITS.enabled;
  $("image-run").addEventListener("click", () => busy($("image-run"), runImage));
}

init().catch((e) => ($("image-limits").textContent = e.message));
