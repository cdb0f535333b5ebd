// Upload page: send the chosen or dropped image to /api/upload and show the verdict (and, when asked,
// each member's Grad-CAM overlay).
"use strict";

const $ = (id) => document.getElementById(id);
let previewUrl = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadInfo() {
  try {
    const response = await fetch("api/info");
    const info = await response.json();
    const members = info.members.length > 1 ? ` — ensemble of ${info.members.join(", ")}` : "";
    $("model-info").textContent = `Model ${info.name} (version ${info.version})${members}. ` +
      `Images up to ${(info.max_body_bytes / 1e6).toFixed(0)} MB.`;
    if (!info.explain) {
      $("explain").disabled = true;
      $("explain-note").textContent = "(not available: no Keras model saved beside this export)";
    }
  } catch (err) {
    $("model-info").textContent = "Model information unavailable.";
  }
}

function render(result, file) {
  const verdict = $("verdict");
  verdict.textContent = result.verdict;
  verdict.dataset.label = String(result.label);
  const probability = $("probability");
  probability.textContent = `${(100 * result.probability_fake).toFixed(2)} %`;
  probability.dataset.value = String(result.probability_fake);
  $("threshold").textContent = `${(100 * result.threshold).toFixed(2)} %`;
  $("bar-fill").style.width = `${(100 * result.probability_fake).toFixed(1)}%`;
  const rows = result.members.map((m) => {
    const row = document.createElement("tr");
    const name = document.createElement("td");
    const score = document.createElement("td");
    name.textContent = m.name;
    score.textContent = `${(100 * m.probability_fake).toFixed(2)} %`;
    score.dataset.value = String(m.probability_fake);
    row.append(name, score);
    if (m.overlay) {  // Grad-CAM overlay (PNG, base64) of this member, explaining the verdict
      const cell = document.createElement("td");
      const img = document.createElement("img");
      img.className = "overlay";
      img.alt = `Grad-CAM of ${m.name}: where it looked for the verdict "${result.verdict}"`;
      img.src = `data:image/png;base64,${m.overlay}`;
      cell.append(img);
      row.append(cell);
    }
    return row;
  });
  $("members").replaceChildren(...rows);
  $("overlay-head").hidden = !result.members.some((m) => m.overlay);
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  $("preview").src = previewUrl;
  $("result").hidden = false;
}

async function classify(file) {
  if (!file) return;
  showError("");
  document.body.dataset.state = "busy";
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const url = $("explain").checked ? "api/upload?explain=1" : "api/upload";
    const response = await fetch(url, { method: "POST", body: form });
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    render(body, file);
    document.body.dataset.state = "done";
  } catch (err) {
    $("result").hidden = true;
    showError(`Could not score this image: ${err.message}`);
    document.body.dataset.state = "error";
  }
}

$("file").addEventListener("change", (event) => {
  classify(event.target.files[0]);
  event.target.value = "";  // choosing the same file again scores it again
});
const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  classify(event.dataTransfer.files[0]);
});
loadInfo();
