// Try the model: drop, choose or paste images (or paste a text), then draw the class probabilities.
// Calls the same score API scripts use (session auth + CSRF); without JS the form posts to the page.
(function () {
  "use strict";
  const form = document.getElementById("classify-form");
  if (!form) return;
  const api = form.dataset.api;
  const isImages = form.dataset.dataType === "images";
  const results = document.getElementById("results");
  const errorBox = document.getElementById("classify-error");
  const busy = document.getElementById("classify-busy");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function pct(p) {
    return (p * 100).toFixed(1) + "%";
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render(body, previews) {
    results.replaceChildren();
    const errors = new Map((body.errors || []).map((e) => [e.index, e]));
    body.scores.forEach((row, i) => {
      const card = el("article", "card result");
      const preview = previews[i] || {};
      if (preview.src) {
        const img = el("img", "result-preview");
        img.src = preview.src;
        img.alt = preview.name || "scored image";
        card.append(img);
      } else if (preview.text !== undefined) {
        card.append(el("div", "result-text", preview.text.length > 600 ? preview.text.slice(0, 599) + "…" : preview.text));
      }
      const info = el("div", "result-body");
      if (preview.name) info.append(el("p", "muted small break", preview.name));
      if (row === null) {
        card.classList.add("result-error");
        const error = errors.get(i);
        info.append(el("p", "error", error ? error.detail : "could not be scored"));
      } else {
        const bars = body.labels.map((name, k) => [name, row[k]]).sort((a, b) => b[1] - a[1]);
        const top = el("p", "result-top", "Prediction: ");
        top.append(el("strong", "prediction-label", bars[0][0]), " " + pct(bars[0][1]));
        info.append(top);
        const list = el("div", "bars");
        list.setAttribute("role", "list");
        bars.forEach(([name, p], k) => {
          const bar = el("div", "bar-row" + (k === 0 ? " top" : ""));
          bar.setAttribute("role", "listitem");
          bar.dataset.class = name;
          bar.dataset.p = String(p);
          const track = el("span", "bar-track");
          const fill = el("span", "bar-fill");
          fill.style.width = (p * 100).toFixed(1) + "%";
          track.append(fill);
          bar.append(el("span", "bar-name", name), track, el("span", "bar-value", pct(p)));
          list.append(bar);
        });
        info.append(list);
      }
      card.append(info);
      results.append(card);
    });
    const version = document.getElementById("model-version");
    if (version && body.model_version !== undefined) version.dataset.scoredWith = String(body.model_version);
  }

  async function send(init, previews) {
    showError("");
    busy.hidden = false;
    try {
      const response = await fetch(api, {
        method: "POST",
        credentials: "same-origin",
        headers: Object.assign({ "X-CSRFToken": csrf, Accept: "application/json" }, init.headers || {}),
        body: init.body,
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        render(body, previews);
      } else {
        results.replaceChildren();
        const reasons = (body.errors || []).map((e) => e.detail).join("; ");
        showError(reasons || body.detail || "Scoring failed (HTTP " + response.status + ").");
      }
    } catch (err) {
      showError("The server could not be reached: " + err.message);
    } finally {
      busy.hidden = true;
    }
  }

  function sendFiles(files) {
    const images = Array.from(files).filter((f) => f.type.startsWith("image/") || f.type === "");
    if (!images.length) {
      showError("Those are not image files.");
      return;
    }
    const data = new FormData();
    images.forEach((f) => data.append("images", f, f.name || "pasted.png"));
    const previews = images.map((f) => ({ src: URL.createObjectURL(f), name: f.name || "pasted image" }));
    send({ body: data }, previews);
  }

  if (isImages) {
    const zone = document.getElementById("drop-zone");
    const input = document.getElementById("classify-files");
    const url = document.getElementById("classify-url");
    input.addEventListener("change", () => {
      if (!input.files.length) return;
      sendFiles(input.files);
      input.value = ""; // sent: a later URL or the same file again is a new request
    });
    ["dragenter", "dragover"].forEach((type) =>
      zone.addEventListener(type, (event) => {
        event.preventDefault();
        zone.classList.add("dragging");
      })
    );
    ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("dragging")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) sendFiles(event.dataTransfer.files);
    });
    document.addEventListener("paste", (event) => {
      const files = Array.from((event.clipboardData && event.clipboardData.files) || []);
      if (files.length) {
        event.preventDefault();
        sendFiles(files);
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.files.length) {
        sendFiles(input.files);
      } else if (url.value.trim()) {
        send(
          { headers: { "Content-Type": "application/json" }, body: JSON.stringify({ type: "images", urls: [url.value.trim()] }) },
          [{ src: url.value.trim(), name: url.value.trim() }]
        );
      } else {
        showError("Choose, drop or paste an image, or give its URL.");
      }
    });
  } else {
    const text = document.getElementById("classify-text");
    const type = form.dataset.dataType === "json" ? "json" : "text";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!text.value.trim()) {
        showError("Paste a text first.");
        return;
      }
      send(
        { headers: { "Content-Type": "application/json" }, body: JSON.stringify({ type: type, texts: [text.value] }) },
        [{ text: text.value }]
      );
    });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }
})();
