// The try-it page: sends the chosen images to /v1/detect and draws what comes back, or to
// /v1/anonymize and shows the photos with their faces hidden, ready to download.
// Plain JavaScript, no build step; every URL is relative, so the page works behind a proxy.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "extd-api-key";
let images = [];  // File objects of the current selection
let generation = 0;  // answers to an older request are dropped
// The servers' default thresholds: detection answers people, anonymization errs towards hiding.
const THRESHOLDS = { detect: "0.5", anonymize: "0.5" };

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function parameters() {
  const params = new URLSearchParams({ score_threshold: $("threshold").value });
  if ($("model").value) params.set("model", $("model").value);
  if (document.querySelector("input[name=policy]:checked").value === "max_side") {
    params.set("max_side", $("max-side").value);
  }
  if (Number($("min-face").value) > 0) params.set("min_face", $("min-face").value);
  if (mode() === "anonymize") {
    params.set("method", $("method").value);
    params.set("shape", $("shape").value);
    params.set("mask_scale", $("mask-scale").value);
  }
  return params;
}

function showError(problem) {
  $("error").hidden = false;
  $("error-title").textContent = problem.title || "Error";
  $("error-detail").textContent = problem.detail || "";
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: `${response.status} ${response.statusText}`, detail: "" };
  }
}

async function loadModels() {
  const response = await fetch("v1/models", { headers: headers() });
  if (!response.ok) return;
  const select = $("model");
  select.replaceChildren();
  for (const model of (await response.json()).models) {
    const option = new Option(`${model.name} (${model.variant})`, model.name);
    option.selected = model.default;
    select.append(option);
  }
}

function svgElement(name, attributes) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function render(result, file, index) {
  const card = document.createElement("article");
  card.className = "result";
  const title = document.createElement("h2");
  const n = result.faces.length;
  title.textContent = `${file.name || "pasted image"}: ${n} face${n === 1 ? "" : "s"}`;
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = `image ${index + 1} with its faces boxed`;
  img.src = URL.createObjectURL(file);  // shown upright (EXIF applied), as the server measured
  const svg = svgElement("svg", {
    viewBox: `0 0 ${result.width} ${result.height}`,
    preserveAspectRatio: "none",
    "aria-hidden": "true",
  });
  const fontSize = Math.max(10, result.width / 70);
  result.faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    svg.append(svgElement("rect", {
      "data-face": String(i), x: x1, y: y1, width: x2 - x1, height: y2 - y1,
    }));
    const label = svgElement("text", { x: x1, y: Math.max(fontSize, y1 - 3), "font-size": fontSize });
    label.textContent = face.score.toFixed(2);
    svg.append(label);
  });
  frame.append(img, svg);
  const list = document.createElement("ol");
  list.className = "faces";
  for (const face of result.faces) {
    const item = document.createElement("li");
    item.textContent = `${face.score.toFixed(3)}  [${face.box.map((v) => v.toFixed(1)).join(", ")}]`;
    list.append(item);
  }
  card.append(title, frame, list);
  return card;
}

function fileName(file, i) {
  return (file.name || `pasted-${i}.png`).replaceAll("'", "");
}

function curlCommand(params) {
  // Double quotes: the shell expands the variable there.
  const key = $("api-key").value.trim() ? ' -H "X-API-Key: $EXTD_API_KEY"' : "";
  if (mode() === "anonymize") {
    const url = new URL(`v1/anonymize?${params}`, document.baseURI);
    return `curl${key} -F image=@'${fileName(images[0], 0)}' -o hidden.jpg '${url}'`;
  }
  const files = images.map((f, i) => ` -F images=@'${fileName(f, i)}'`);
  const url = new URL(`v1/detect?${params}`, document.baseURI);
  return `curl${key}${files.join("")} '${url}'`;
}

function renderHidden(answer, file, index) {
  const card = document.createElement("article");
  card.className = "result";
  const title = document.createElement("h2");
  const n = answer.faces.length;
  title.textContent = `${file.name || "pasted image"}: ${n} face${n === 1 ? "" : "s"} hidden`;
  const bytes = Uint8Array.from(atob(answer.image), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: `image/${answer.format}` }));
  const img = document.createElement("img");
  img.alt = `image ${index + 1} with its faces hidden`;
  img.src = url;
  img.className = "hidden-result";
  const download = document.createElement("a");
  const stem = (file.name || `pasted-${index}`).replace(/\.[^.]*$/, "");
  download.href = url;
  download.download = `${stem}-anonymized.${answer.format === "jpeg" ? "jpg" : answer.format}`;
  download.className = "download";
  download.textContent = `Download ${download.download}`;
  card.append(title, img, download);
  return card;
}

// POST one request; the parsed JSON answer, or null after showing the problem.
async function post(path, body, mine, accept) {
  let response;
  try {
    const sent = { ...headers(), ...(accept ? { Accept: accept } : {}) };
    response = await fetch(path, { method: "POST", body, headers: sent });
  } catch (error) {
    if (mine === generation) showError({ title: "Network error", detail: String(error) });
    return null;
  }
  if (!response.ok) {
    if (mine === generation) showError(await problemOf(response));
    return null;
  }
  return response.json();
}

function failed() {
  $("results").replaceChildren();
  $("face-count").textContent = "0";
  $("status").textContent = "Failed.";
}

function showRaw(payload, params) {
  const t = payload.timings_ms;
  const steps = Object.entries(t).map(([k, v]) => `${k} ${v} ms`);
  $("timings").textContent = steps.join(", ");
  $("json").textContent = JSON.stringify(payload, null, 2);
  $("curl").textContent = curlCommand(params);
  $("raw").hidden = false;
}

async function detect() {
  if (!images.length) return;
  const mine = ++generation;
  const params = parameters();
  $("error").hidden = true;
  if (mode() === "anonymize") return anonymize(mine, params);
  const body = new FormData();
  images.forEach((file, i) => body.append("images", file, fileName(file, i)));
  $("status").textContent = `Detecting faces in ${images.length} image(s)...`;
  const payload = await post(`v1/detect?${params}`, body, mine);
  if (mine !== generation) return;
  if (!payload) return failed();
  $("results").replaceChildren(...payload.results.map((r, i) => render(r, images[i], i)));
  const count = payload.results.reduce((sum, r) => sum + r.faces.length, 0);
  $("face-count").textContent = String(count);
  $("status").textContent = `Done with ${payload.model}.`;
  showRaw(payload, params);
}

async function anonymize(mine, params) {
  $("status").textContent = `Hiding the faces of ${images.length} image(s)...`;
  const answers = [];
  for (const [i, file] of images.entries()) {  // one photo per request
    const body = new FormData();
    body.append("image", file, fileName(file, i));
    const answer = await post(`v1/anonymize?${params}`, body, mine, "application/json");
    if (mine !== generation) return;
    if (!answer) return failed();
    answers.push(answer);
  }
  $("results").replaceChildren(...answers.map((a, i) => renderHidden(a, images[i], i)));
  const count = answers.reduce((sum, a) => sum + a.faces.length, 0);
  $("face-count").textContent = String(count);
  $("status").textContent = `Done with ${answers[0].model}.`;
  const shown = { ...answers[0], image: `(${answers[0].image.length} base64 characters)` };
  showRaw(shown, params);
}

function choose(files) {
  images = [...files];  // anything: the server says what is wrong with a file that is no image
  detect();
}

let debounce;
function later() {
  clearTimeout(debounce);
  debounce = setTimeout(detect, 200);
}

window.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value);
    loadModels();
  });
  $("files").addEventListener("change", (event) => choose(event.target.files));
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    later();
  });
  for (const id of ["model", "max-side", "min-face", "method", "shape"]) {
    $(id).addEventListener("change", detect);
  }
  $("mask-scale").addEventListener("input", () => {
    $("mask-scale-value").textContent = Number($("mask-scale").value).toFixed(1);
    later();
  });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      $("hiding").hidden = mode() !== "anonymize";
      $("threshold").value = THRESHOLDS[mode()];
      $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
      detect();
    });
  }
  for (const radio of document.querySelectorAll("input[name=policy]")) {
    radio.addEventListener("change", detect);
  }
  const drop = $("drop");
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("files").click(); }
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    const files = [...event.clipboardData.items]
      .filter((item) => item.kind === "file")
      .map((item) => item.getAsFile());
    if (files.length) choose(files);
  });
  $("copy-json").addEventListener("click", () => navigator.clipboard.writeText($("json").textContent));
  loadModels();
});
