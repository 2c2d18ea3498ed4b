// Page helpers shared by the tabs: the error box, a busy button, a job's progress bar with its Cancel button.
import { cancelJob } from "./api.js";

export const $ = (id) => document.getElementById(id);

export function showError(err) {
  const box = $("error");
  box.textContent = err.message || String(err);
  box.hidden = false;
  clearTimeout(showError.t);
  showError.t = setTimeout(() => (box.hidden = true), 9000);
}

export async function busy(button, fn) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Running…";
  $("error").hidden = true;
  try { return await fn(); } catch (e) { showError(e); } finally { button.disabled = false; button.textContent = label; }
}

export function progressBar(container) {
  container.innerHTML = `<div class="progress"><div style="width:0%"></div></div><div class="hint"></div>` +
    `<button class="cancel-job" type="button">Cancel</button>`;
  const cancel = container.querySelector(".cancel-job");
  return (f, msg, id) => {
    if (id && !cancel.dataset.job) {
      cancel.dataset.job = id;
      cancel.addEventListener("click", () => { cancel.disabled = true; cancelJob(id).catch(() => {}); });
    }
    container.querySelector(".progress > div").style.width = `${Math.round(f * 100)}%`;
    container.querySelector(".hint").textContent = msg;
    if (f >= 1) setTimeout(() => (container.innerHTML = ""), 300);
  };
}

// A link that saves `text` as a file (a Blob URL: nothing leaves the browser).
export function saveLink(text, filename, type, label) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = filename;
  a.textContent = label;
  a.className = "save-link";
  return a;
}
