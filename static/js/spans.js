// Light Bulb span screen (sequence tagging): plugs into label.js as window.LBScreen.
// label.js keeps the queue, prefetching, undo, skip and the stats; this draws one text as its tokens
// (Item.tokens: the project model's own tokenizer, so a span always snaps to what the model reads),
// keeps the spans being edited, and says what to send. Keys: arrows move a token cursor, Shift extends,
// a type's key marks the selection (or retypes the span under a lone cursor), x/Delete removes,
// Enter saves the text as it stands. The mouse selects by dragging over tokens; a span's × removes it.
(() => {
  "use strict";
  const cfg = JSON.parse(document.getElementById("lb-config").textContent);
  const types = cfg.classes.map((c) => c.label);
  const typeKeys = new Map();
  cfg.classes.forEach((c) => c.keys.forEach((k) => typeKeys.set(k, c.label)));
  const PALETTE = 8; // .ent-0 … .ent-7 in app.css
  const tint = (label) => `ent-${Math.max(0, types.indexOf(label)) % PALETTE}`;

  // spans: [{start, end, label, proposed}] sorted by start; `proposed` marks the model's (shown apart).
  const s = { item: null, text: "", tokens: [], spans: [], cursor: 0, anchor: 0, dragging: false, view: null };
  window.__lbSpans = s; // read by the browser tests

  document.querySelectorAll(".span-type").forEach((b) => b.classList.add(tint(b.dataset.label)));

  const selection = () => [Math.min(s.anchor, s.cursor), Math.max(s.anchor, s.cursor)];
  const overlaps = (span, start, end) => span.start < end && start < span.end;
  const tokenRange = (lo, hi) => [s.tokens[lo][0], s.tokens[hi][1]];

  function spanAtToken(i) {
    const [a, b] = s.tokens[i] || [0, 0];
    return s.spans.findIndex((sp) => overlaps(sp, a, b));
  }

  function load(item, view) {
    s.item = item;
    s.view = view;
    s.text = item.text || "";
    s.tokens = item.tokens || [];
    // An undone text comes back with the spans it had; otherwise the model's spans, when it sent any.
    const own = item.answer && item.answer.spans;
    const proposed = !own && item.prediction && item.prediction.spans;
    const from = own || proposed || [];
    s.spans = from.map((sp) => ({ start: sp.start, end: sp.end, label: sp.label, proposed: !own }))
      .sort((x, y) => x.start - y.start);
    s.cursor = s.anchor = 0;
    s.dragging = false;
    draw();
  }

  function draw() {
    const view = s.view;
    if (!view) return;
    const box = document.createElement("div");
    box.className = "item-text span-text";
    box.setAttribute("role", "application");
    box.setAttribute("aria-label", "Text to tag: arrows move, Shift extends, a type's key marks");
    if (!s.tokens.length) {
      box.textContent = s.text;
    } else {
      const [lo, hi] = selection();
      let at = 0;
      let parent = box;
      let open = -1; // index of the span being drawn
      s.tokens.forEach(([a, b], i) => {
        const k = s.spans.findIndex((sp) => sp.start === a);
        if (open === -1 && k !== -1) {
          const sp = s.spans[k];
          parent.append(document.createTextNode(s.text.slice(at, a)));
          at = a;
          const mark = document.createElement("mark");
          mark.className = `ent ${tint(sp.label)}${sp.proposed ? " proposed" : ""}`;
          mark.dataset.span = String(k);
          mark.dataset.label = sp.label;
          mark.title = sp.proposed ? `${sp.label} · the model's guess: Enter keeps it, x removes it` : sp.label;
          box.append(mark);
          parent = mark;
          open = k;
        }
        parent.append(document.createTextNode(s.text.slice(at, a)));
        const tok = document.createElement("span");
        tok.className = "tok";
        if (i >= lo && i <= hi) tok.classList.add("sel");
        if (i === s.cursor) tok.classList.add("cur");
        tok.dataset.i = String(i);
        tok.textContent = s.text.slice(a, b);
        parent.append(tok);
        at = b;
        if (open !== -1 && b >= s.spans[open].end) {
          const tag = document.createElement("span");
          tag.className = "ent-tag";
          tag.textContent = s.spans[open].label;
          const x = document.createElement("button");
          x.type = "button";
          x.className = "ent-x";
          x.dataset.span = String(open);
          x.title = `Remove this ${s.spans[open].label} span`;
          x.setAttribute("aria-label", `remove ${s.spans[open].label} span ${s.text.slice(s.spans[open].start, s.spans[open].end)}`);
          x.textContent = "×";
          parent.append(tag, x);
          parent = box;
          open = -1;
        }
      });
      box.append(document.createTextNode(s.text.slice(at)));
    }
    view.replaceChildren(box);
    const cur = box.querySelector(".tok.cur");
    if (cur && cur.scrollIntoView) cur.scrollIntoView({ block: "nearest" });
    const count = document.getElementById("span-count");
    if (count) {
      const n = s.spans.length;
      const proposed = s.spans.filter((sp) => sp.proposed).length;
      count.textContent = n === 0 ? "no spans" : `${n} span${n === 1 ? "" : "s"}${proposed ? ` (${proposed} the model's)` : ""}`;
    }
  }

  function move(to, extend) {
    if (!s.tokens.length) return;
    s.cursor = Math.max(0, Math.min(s.tokens.length - 1, to));
    if (!extend) s.anchor = s.cursor;
    draw();
  }

  // No text shown (the last one saved, the next not come): the keys and buttons have nothing to act on.
  const showing = () => Boolean(s.view && s.view.dataset.itemId && s.item && String(s.item.id) === s.view.dataset.itemId);

  function mark(label) {
    if (!s.tokens.length || !showing()) return;
    const [lo, hi] = selection();
    const inside = lo === hi ? spanAtToken(lo) : -1;
    if (inside !== -1) {
      // A lone cursor on a span retypes the whole span (and makes it the person's own).
      s.spans[inside] = { ...s.spans[inside], label, proposed: false };
    } else {
      const [start, end] = tokenRange(lo, hi);
      s.spans = s.spans.filter((sp) => !overlaps(sp, start, end));
      s.spans.push({ start, end, label, proposed: false });
      s.spans.sort((x, y) => x.start - y.start);
    }
    s.cursor = s.anchor = Math.min(hi + 1, s.tokens.length - 1);
    draw();
  }

  function removeAtSelection() {
    if (!s.tokens.length || !showing()) return;
    const [lo, hi] = selection();
    const [start, end] = tokenRange(lo, hi);
    s.spans = s.spans.filter((sp) => !overlaps(sp, start, end));
    s.anchor = s.cursor;
    draw();
  }

  function removeSpan(k) {
    s.spans.splice(k, 1);
    draw();
  }

  // Mouse: press on a token, drag over others, release; then a type's key or button marks it.
  document.addEventListener("mousedown", (ev) => {
    const x = ev.target.closest(".ent-x");
    if (x && s.view && s.view.contains(x)) {
      ev.preventDefault();
      removeSpan(Number(x.dataset.span));
      return;
    }
    const tok = ev.target.closest(".span-text .tok");
    if (!tok) return;
    ev.preventDefault(); // no native text selection: the token selection is the one that counts
    const i = Number(tok.dataset.i);
    s.cursor = i;
    if (!ev.shiftKey) s.anchor = i;
    s.dragging = true;
    draw();
  });
  document.addEventListener("mouseover", (ev) => {
    if (!s.dragging) return;
    const tok = ev.target.closest(".span-text .tok");
    if (tok && Number(tok.dataset.i) !== s.cursor) {
      s.cursor = Number(tok.dataset.i);
      draw();
    }
  });
  document.addEventListener("mouseup", () => (s.dragging = false));
  const removeBtn = document.getElementById("remove-span-btn");
  if (removeBtn) removeBtn.addEventListener("click", removeAtSelection);

  window.LBScreen = {
    render: load,
    // "submit" when the key saves the text, true when the screen used it, false to let label.js try.
    handleKey(ev, key) {
      if (key === "Enter") return "submit";
      if (key === "ArrowRight" || key === "ArrowLeft") {
        move(s.cursor + (key === "ArrowRight" ? 1 : -1), ev.shiftKey);
        return true;
      }
      if (key === "Home" || key === "End") {
        move(key === "Home" ? 0 : s.tokens.length - 1, ev.shiftKey);
        return true;
      }
      if (key === "Escape") {
        s.anchor = s.cursor;
        draw();
        return true;
      }
      if (key === "x" || key === "Delete") {
        removeAtSelection();
        return true;
      }
      if (typeKeys.has(key)) {
        mark(typeKeys.get(key));
        return true;
      }
      return false;
    },
    pick: mark, // a type's button
    answer: () => ({ spans: s.spans.map(({ start, end, label }) => ({ start, end, label })) }),
  };
})();
