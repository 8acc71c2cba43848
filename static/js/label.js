// Light Bulb labeling client: keyboard-first, optimistic, prefetching.
// The next items are leased and loaded ahead, so a keypress shows the next item at once while the
// judgement is sent in the background; any error is shown and the item is put back.
(() => {
  "use strict";
  const cfg = JSON.parse(document.getElementById("lb-config").textContent);
  const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] || "";
  const $ = (id) => document.getElementById(id);
  const view = $("item-view");
  const keymap = new Map();
  cfg.classes.forEach((c) => c.keys.forEach((k) => keymap.set(k, c.label)));
  // Skip's and undo's letters: the ones no class took (labeling/hotkeys.py), as their buttons show.
  const commands = cfg.commands || { skip: "s", undo: "u" };
  // A structured label type's screen (spans.js: window.LBScreen) draws the item and keeps the answer
  // being edited; this file still runs the queue, undo and skip. Classification has none: a key is a class.
  const screen = cfg.screen && cfg.screen !== "classes" ? window.LBScreen : null;

  // `finished` holds ids labelled or skipped here: a refill that raced with their judgement may still
  // list them as held, and they must not be shown twice.
  const state = { queue: [], current: null, shownAt: 0, refilling: null, timings: [], pending: 0, finished: new Set() };
  window.__lb = state; // read by the browser tests (timings, pending requests)

  async function api(url, { method = "GET", body } = {}) {
    const res = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) {
      const err = new Error((data && data.detail) || `HTTP ${res.status}`);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function toast(message, kind = "error") {
    const t = $("toast");
    t.textContent = message;
    t.className = `toast toast-${kind}`;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (t.hidden = true), 4000);
  }

  function prefetch(item) {
    if (item.media_url && !item._img) {
      item._img = new Image();
      item._img.decoding = "async";
      item._img.src = item.media_url;
    }
  }

  function render(item) {
    view.replaceChildren();
    if (screen) {
      screen.render(item, view);
    } else if (cfg.dataType === "images") {
      const img = item._img && item._img.complete ? item._img : new Image();
      if (!img.src) img.src = item.media_url;
      img.alt = item.path;
      img.className = "item-image";
      view.append(img);
    } else if (cfg.dataType === "json") {
      const box = document.createElement("div");
      box.className = "item-json";
      box.innerHTML = item.html; // sanitised on the server (nh3), values HTML-escaped
      view.append(box);
    } else if (item.email) {
      // An e-mail: subject and sender on top, the body in the reading box, the headers folded below.
      const mail = document.createElement("div");
      mail.className = "item-email";
      const subject = document.createElement("h2");
      subject.className = "email-subject";
      subject.textContent = item.email.subject || "(no subject)";
      const meta = document.createElement("p");
      meta.className = "muted email-meta";
      meta.textContent = [item.email.from && "From " + item.email.from, item.email.date].filter(Boolean).join(" · ");
      const body = document.createElement("div");
      body.className = "item-text";
      body.textContent = item.email.body;
      const headers = document.createElement("details");
      headers.className = "email-headers";
      const summary = document.createElement("summary");
      summary.textContent = "Headers";
      const pre = document.createElement("pre");
      pre.textContent = item.email.headers;
      headers.append(summary, pre);
      mail.append(subject, meta, body, headers);
      view.append(mail);
    } else {
      const box = document.createElement("div");
      box.className = "item-text";
      box.textContent = item.data;
      view.append(box);
    }
    $("item-path").textContent = item.path;
    const stage = $("item-stage");
    stage.textContent = item.stage || "";
    stage.className = `pill pill-stage-${(item.stage || "").toLowerCase()}`;
    const pred = $("prediction");
    if (item.picked_by === "audit") {
      // A blind second look at an item confirmed in a batch: no model guess, no proposal shown.
      pred.textContent = "Audit: a random check of a confirmed batch · label what you see";
      pred.title = "Audits measure how precise batch confirmations are";
      pred.hidden = false;
    } else if (item.stage === "TEST") {
      // TEST is blind: the server sends no guess for it (labeling/blind.py); say why there is none.
      pred.textContent = "TEST item · label it blind: it measures the model, so no model guess is shown";
      pred.title = "TEST labels are never shown the model's guess or anyone else's label";
      pred.hidden = false;
    } else if (item.prediction && item.prediction.label) {
      const p = item.prediction;
      const why = item.stage === "TRAIN" && item.picked_by === "active"
        ? ` · picked as uncertain (${(p.uncertainty ?? p.entropy ?? 0).toFixed(2)})` : "";
      // A text's spans: how sure the model was of its least sure decision (begin, end or leave out a span).
      const sure = p.spans ? `least sure decision ${Math.round((p.confidence ?? 0) * 100)}%` : `${Math.round((p.confidence ?? 0) * 100)}%`;
      pred.textContent = `Model: ${p.label} (${sure})${why}`;
      pred.title = Object.entries(p.scores || {}).map(([k, v]) => `${k}: ${(v * 100).toFixed(1)}%`).join("\n");
      pred.hidden = false;
    } else if (item.stage === "TRAIN" && item.picked_by === "typical") {
      // Picked before the first model; once one exists its guess (above) says more than how it was picked.
      pred.textContent = "No model yet · picked as typical of a group of items nobody has labelled";
      pred.title = "Before the first model, TRAIN starts with the most typical item of each large unlabelled group";
      pred.hidden = false;
    } else {
      pred.hidden = true;
    }
    view.dataset.itemId = item.id;
    state.shownAt = performance.now();
  }

  // With nothing to label, look again now and then: a lease someone let lapse, or an item labelled by
  // one person that now needs this person's independent label, comes back without a reload.
  const RECHECK_MS = (cfg.recheck_seconds || 15) * 1000;
  function showDone(done) {
    $("label-card").hidden = done;
    $("done").hidden = !done;
    clearTimeout(state.recheck);
    if (done) state.recheck = setTimeout(() => { if (!state.current) refill(); }, RECHECK_MS);
  }

  function advance() {
    state.current = state.queue.shift() || null;
    if (state.current) {
      showDone(false);
      render(state.current);
    } else {
      view.replaceChildren();
      delete view.dataset.itemId;
    }
    refill();
  }

  async function refill() {
    if (state.refilling) return state.refilling;
    if (state.queue.length >= 2) return;
    state.refilling = (async () => {
      try {
        // The server returns the items we already hold first, then new ones.
        const held = state.queue.length + (state.current ? 1 : 0);
        const mode = cfg.review ? "&mode=review" : "";
        const items = await api(`${cfg.api.next}?count=${Math.min(held + 3, 50)}${mode}`);
        const known = new Set([state.current?.id, ...state.queue.map((i) => i.id), ...state.finished]);
        for (const item of items) {
          if (!known.has(item.id)) {
            prefetch(item);
            state.queue.push(item);
          }
        }
        if (!state.current) {
          if (state.queue.length) advance();
          else showDone(true);
        }
      } catch (err) {
        toast(`Could not load items: ${err.message}`);
      } finally {
        state.refilling = null;
      }
    })();
    return state.refilling;
  }

  function measure(t0) {
    requestAnimationFrame(() => state.timings.push(performance.now() - t0));
  }

  // name: the class (classification); null on a structured screen, whose answer is the screen's.
  async function label(name) {
    const item = state.current;
    if (!item) return;
    const t0 = performance.now();
    const timeTaken = (t0 - state.shownAt) / 1000;
    const answer = screen ? screen.answer() : { label: name };
    state.finished.add(item.id);
    if (name) flash(name);
    else flashButton($("accept-btn"));
    advance();
    measure(t0);
    state.pending++;
    try {
      await api(cfg.api.judgements, { method: "POST", body: { item: item.id, ...answer, time_taken: timeTaken } });
      refreshStats();
    } catch (err) {
      if (err.status === 409) {
        toast(`${item.path}: ${err.message}. Moving on.`);
      } else {
        const allowed = err.data && err.data.allowed ? ` (allowed: ${err.data.allowed.join(", ")})` : "";
        toast(`Not saved: ${err.message}${allowed}`);
        state.finished.delete(item.id);
        if (screen) item.answer = answer; // nothing the person marked is lost: it comes back as it was
        putBack(item);
      }
    } finally {
      state.pending--;
    }
  }

  function putBack(item) {
    if (state.current) {
      // What the person marked on the text being put aside comes back with it.
      if (screen) state.current.answer = screen.answer();
      state.queue.unshift(state.current);
    }
    state.current = item;
    showDone(false);
    render(item);
  }

  async function skip() {
    const item = state.current;
    if (!item) return;
    const t0 = performance.now();
    state.finished.add(item.id);
    advance();
    measure(t0);
    state.pending++;
    try {
      await api(cfg.api.skip.replace("{id}", item.id), { method: "POST" });
    } catch (err) {
      toast(`Skip failed: ${err.message}`);
    } finally {
      state.pending--;
    }
  }

  async function undo() {
    state.pending++;
    try {
      while (state.pending > 1) await new Promise((r) => setTimeout(r, 20)); // let earlier labels land first
      const item = await api(cfg.api.undo, { method: "POST" });
      state.finished.delete(item.id);
      state.queue = state.queue.filter((i) => i.id !== item.id);
      putBack(item);
      toast(`Undone: ${item.path}`, "info");
      refreshStats();
    } catch (err) {
      toast(err.status === 409 ? "Nothing to undo." : `Undo failed: ${err.message}`, "info");
    } finally {
      state.pending--;
    }
  }

  function flash(name) {
    flashButton(document.querySelector(`.class-btn[data-label="${CSS.escape(name)}"]`));
  }
  function flashButton(btn) {
    if (!btn) return;
    btn.classList.add("pressed");
    setTimeout(() => btn.classList.remove("pressed"), 150);
  }

  let statsTimer = null;
  function refreshStats() {
    clearTimeout(statsTimer);
    statsTimer = setTimeout(loadStats, 300);
  }
  async function loadStats() {
    try {
      const s = await api(cfg.api.stats);
      const set = (k, v) => document.querySelectorAll(`[data-stat="${k}"]`).forEach((el) => (el.textContent = v));
      set("total", s.labelled.total);
      set("train", s.labelled.train);
      set("test", s.labelled.test);
      set("unlabelled", s.unlabelled);
      set("training", s.training ? (s.updating ? "yes · updating" : "yes") : "no");
      document.querySelectorAll('[data-stat="training"]').forEach((el) => (el.title = s.model_detail || ""));
      set("accuracy", s.accuracy == null ? "–" : `${(s.accuracy * 100).toFixed(1)}%`);
      set("f1", s.f1 == null ? "–" : `${(s.f1 * 100).toFixed(1)}%`);
      const ready = s.proposals ? s.proposals.ready : 0;
      const link = $("proposals-link");
      if (link) {
        link.hidden = !ready || cfg.review;
        set("proposals", ready);
      }
      if (s.you) {
        set("mine", s.you.count);
        const pace = s.you.last_hour ? `${s.you.last_hour}/h` : "";
        const median = s.you.median_seconds != null ? `, ${s.you.median_seconds.toFixed(1)} s each` : "";
        set("pace", pace ? `(${pace}${median})` : "");
      }
    } catch (err) {
      /* stats are informative; the next refresh retries */
    }
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.closest("input, textarea, select, [contenteditable]")) return;
    // A held key repeats: one press is one label (held Enter would accept text after text unseen).
    if (ev.repeat && !ev.key.startsWith("Arrow")) return;
    // Enter on a focused link or button is that control's (a span's ×, "back to labelling"), not a save.
    if (ev.key === "Enter" && ev.target.closest("a, button:not(.class-btn):not(#accept-btn)")) return;
    if (document.querySelector("dialog[open]")) return;  // the key list (?) is open: keys are for it
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (screen) {
      const used = state.current ? screen.handleKey(ev, key) : false;
      if (used === "submit") {
        ev.preventDefault();
        label(null);
        return;
      }
      if (used) {
        ev.preventDefault();
        return;
      }
      // Arrows move the token cursor here: skip and undo keep their letters (and Backspace undoes).
      if (commands.skip && key === commands.skip) {
        ev.preventDefault();
        skip();
      } else if ((commands.undo && key === commands.undo) || key === "Backspace") {
        ev.preventDefault();
        undo();
      }
      return;
    }
    if (keymap.has(key)) {
      ev.preventDefault();
      label(keymap.get(key));
    } else if ((commands.skip && key === commands.skip) || key === "ArrowRight") {
      ev.preventDefault();
      skip();
    } else if ((commands.undo && key === commands.undo) || key === "Backspace" || key === "ArrowLeft") {
      ev.preventDefault();
      undo();
    }
  });
  document.querySelectorAll(".class-btn").forEach((b) => b.addEventListener("click", () => {
    if (screen) screen.pick(b.dataset.label);
    else label(b.dataset.label);
  }));
  const accept = $("accept-btn");
  if (accept) accept.addEventListener("click", () => label(null));
  $("skip-btn").addEventListener("click", skip);
  $("undo-btn").addEventListener("click", undo);

  refill();
  loadStats();
  setInterval(loadStats, 5000);
})();
