// Adding data (interchange/data.html) and following an import (interchange/import.html).
// Uploads go to the API in requests of a few dozen files with a progress bar: open an import, send the
// files (each with its path inside the folder it came from), start it, then follow the worker. Without this
// script the form posts the files in one request and the import page refreshes itself.
(function () {
  "use strict";

  function csrf(form) {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function size(n) {
    if (n >= 1024 ** 3) return (n / 1024 ** 3).toFixed(1) + " GB";
    if (n >= 1024 ** 2) return (n / 1024 ** 2).toFixed(1) + " MB";
    if (n >= 1024) return (n / 1024).toFixed(0) + " KB";
    return n + " bytes";
  }

  async function api(url, token, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin", body,
      headers: { "X-CSRFToken": token, Accept: "application/json" },
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = { detail: response.statusText }; }
    if (!response.ok) {
      const detail = data.detail || Object.values(data).flat().join(" ") || ("error " + response.status);
      throw new Error(detail);
    }
    return data;
  }

  // -- the upload form ---------------------------------------------------------------------------
  const form = document.getElementById("upload-form");
  if (form) {
    const token = csrf(form);
    const filesInput = document.getElementById("upload-files");
    const folderInput = document.getElementById("upload-folder");
    const drop = document.getElementById("upload-drop");
    const chosenText = document.getElementById("upload-chosen");
    const progress = document.getElementById("upload-progress");
    const fill = document.getElementById("upload-fill");
    const progressText = document.getElementById("upload-text");
    const refusedList = document.getElementById("upload-refused");
    const submit = document.getElementById("upload-submit");
    const perRequest = Number(form.dataset.perRequest) || 50;
    const maxFiles = Number(form.dataset.maxFiles);
    const maxBytes = Number(form.dataset.maxBytes);
    let chosen = []; // [{file, path}]

    function show() {
      const bytes = chosen.reduce((n, c) => n + c.file.size, 0);
      chosenText.textContent = chosen.length
        ? `${chosen.length.toLocaleString()} file(s), ${size(bytes)} chosen.`
        : "Nothing chosen yet.";
    }
    function take(entries) {
      const seen = new Set(chosen.map((c) => c.path));
      for (const entry of entries) {
        if (!seen.has(entry.path)) { chosen.push(entry); seen.add(entry.path); }
      }
      show();
    }
    filesInput.addEventListener("change", () => take([...filesInput.files].map((f) => ({ file: f, path: f.name }))));
    folderInput.addEventListener("change", () =>
      take([...folderInput.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name }))));

    // A folder dropped on the zone is walked with the File System API, keeping each file's path.
    async function walk(entry, prefix, out) {
      if (entry.isFile) {
        const file = await new Promise((ok, ko) => entry.file(ok, ko));
        out.push({ file, path: prefix + file.name });
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((ok, ko) => reader.readEntries(ok, ko));
          if (!batch.length) break;
          for (const child of batch) await walk(child, prefix + entry.name + "/", out);
        }
      }
    }
    ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
      event.preventDefault(); drop.classList.add("dragging");
    }));
    ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("dragging")));
    drop.addEventListener("drop", async (event) => {
      event.preventDefault();
      const items = [...(event.dataTransfer.items || [])];
      const entries = items.map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
      if (entries.length) {
        const out = [];
        for (const entry of entries) await walk(entry, "", out);
        take(out);
      } else {
        take([...event.dataTransfer.files].map((f) => ({ file: f, path: f.name })));
      }
    });

    function sendFiles(url, batch, sentBefore, totalBytes) {
      // XMLHttpRequest, for the upload's own progress events (fetch has none).
      return new Promise((resolve, reject) => {
        const body = new FormData();
        for (const entry of batch) { body.append("files", entry.file, entry.file.name); body.append("paths", entry.path); }
        const xhr = new XMLHttpRequest();
        xhr.open("POST", url);
        xhr.setRequestHeader("X-CSRFToken", token);
        xhr.setRequestHeader("Accept", "application/json");
        xhr.upload.addEventListener("progress", (event) => {
          if (event.lengthComputable) {
            const done = sentBefore + event.loaded;
            fill.style.width = Math.min(100, (100 * done) / Math.max(1, totalBytes)) + "%";
            progressText.textContent = `Uploading: ${size(done)} of ${size(totalBytes)}`;
          }
        });
        xhr.addEventListener("load", () => {
          let data = {};
          try { data = JSON.parse(xhr.responseText); } catch (e) { data = { detail: xhr.statusText }; }
          if (xhr.status >= 200 && xhr.status < 300) resolve(data);
          else reject(new Error(data.detail || ("error " + xhr.status)));
        });
        xhr.addEventListener("error", () => reject(new Error("the connection was lost")));
        xhr.send(body);
      });
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      refusedList.hidden = true;
      refusedList.replaceChildren();
      if (!chosen.length) { chosenText.textContent = "Choose files or a folder first."; return; }
      const totalBytes = chosen.reduce((n, c) => n + c.file.size, 0);
      if (chosen.length > maxFiles || totalBytes > maxBytes) {
        chosenText.textContent = `One import holds at most ${maxFiles.toLocaleString()} files and ${size(maxBytes)}; ` +
          `this is ${chosen.length.toLocaleString()} files, ${size(totalBytes)}. Upload it in parts (or as zips).`;
        return;
      }
      submit.disabled = true;
      progress.hidden = false;
      const refused = [];
      let job = null;
      try {
        const policy = form.querySelector("input[name=duplicates]:checked");
        const opened = new FormData();
        opened.append("duplicates", policy ? policy.value : "drop");
        job = await api(form.dataset.openUrl, token, opened);
        const base = form.dataset.openUrl + job.id + "/";
        let sent = 0;
        for (let start = 0; start < chosen.length; start += perRequest) {
          const batch = chosen.slice(start, start + perRequest);
          const answer = await sendFiles(base + "files/", batch, sent, totalBytes);
          refused.push(...answer.refused);
          sent += batch.reduce((n, c) => n + c.file.size, 0);
        }
        progressText.textContent = "Uploaded; handing it to the worker…";
        await api(base + "start/", token, new FormData());
        window.location.assign(form.dataset.importPage.replace(/0\/$/, job.id + "/"));
      } catch (error) {
        progressText.textContent = "Upload stopped: " + error.message + ". Nothing of it was imported.";
        if (job) api(form.dataset.openUrl + job.id + "/cancel/", token, new FormData()).catch(() => {});
        submit.disabled = false;
      }
      if (refused.length) {
        refusedList.replaceChildren(...refused.map((text) => {
          const li = document.createElement("li");
          li.textContent = text;
          return li;
        }));
        refusedList.hidden = false;
      }
    });
  }

  // -- the server folder, checked as it is typed ------------------------------------------------
  const folderForm = document.getElementById("folder-form");
  if (folderForm) {
    const input = document.getElementById("folder-path");
    const note = document.getElementById("folder-check");
    const button = document.getElementById("folder-submit");
    let timer = null;
    let asked = 0;
    async function check() {
      const path = input.value.trim();
      if (!path) return;
      const ticket = ++asked;
      const url = folderForm.dataset.checkUrl + "?path=" + encodeURIComponent(path);
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        const data = await response.json();
        if (ticket !== asked) return; // an answer to an older path
        note.textContent = data.ok ? "✓ " + data.message : data.message;
        note.classList.toggle("error", !data.ok);
        note.classList.toggle("ok-text", data.ok);
        button.disabled = !data.ok;
      } catch (e) { /* the form still submits and the server says what is wrong */ }
    }
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 350); });
    if (input.value.trim()) check();
  }

  // -- an import's progress -----------------------------------------------------------------------
  const status = document.getElementById("import-status");
  if (status && status.dataset.finished === "0") {
    const fill = document.getElementById("import-fill");
    const phase = document.getElementById("import-phase");
    const state = document.getElementById("import-state");
    const phases = { unpacking: "Unpacking zips", reading: "Reading and checking files", saving: "Saving files" };
    async function poll() {
      try {
        const response = await fetch(status.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.ok) {
          const job = await response.json();
          if (job.finished) { window.location.reload(); return; }
          state.textContent = job.state_display;
          if (job.phase && job.progress_total) {
            fill.style.width = Math.round((100 * job.progress_done) / job.progress_total) + "%";
            phase.textContent = `${phases[job.phase] || job.phase}: ${job.progress_done.toLocaleString()} of ` +
              `${job.progress_total.toLocaleString()} files`;
          } else if (job.state === "queued") {
            phase.textContent = "Waiting for the worker (it finishes the task it is on first)…";
          }
        }
      } catch (e) { /* try again at the next tick */ }
      setTimeout(poll, 1000);
    }
    setTimeout(poll, 500);
  }
})();
