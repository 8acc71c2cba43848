// Light Bulb box screen (object detection): plugs into label.js as window.LBScreen.
// label.js keeps the queue, prefetching, undo, skip and the stats; this draws one image with its boxes and
// says what to send. Boxes are kept in pixels of the original image (item.width × item.height), whatever
// the zoom. Mouse: drag on the image draws a box of the current class; drag a box to move it, a handle to
// resize it; the wheel zooms at the pointer; Space + drag (or the middle button) pans. Keys: a class's key
// sets the selected box's class (and the class of the next box drawn); Tab / Shift+Tab step through the
// boxes; arrows move the selected box (Shift: 10 px) or pan when none is selected; x, Delete or Backspace
// removes the selected box; a accepts the model's box; + / - zoom, f fits; Enter saves the image as it
// stands (the model's boxes included; no boxes is the answer "no objects here").
(() => {
  "use strict";
  const cfg = JSON.parse(document.getElementById("lb-config").textContent);
  const classes = cfg.classes.map((c) => c.label);
  const classKeys = new Map();
  cfg.classes.forEach((c) => c.keys.forEach((k) => classKeys.set(k, c.label)));
  const PALETTE = 8; // .ent-0 … .ent-7 in app.css
  const tint = (label) => `ent-${Math.max(0, classes.indexOf(label)) % PALETTE}`;
  const SVG = "http://www.w3.org/2000/svg";
  const MIN_SCREEN_PX = 4; // a drag shorter than this is a click, not a box
  const HANDLE_PX = 9;

  // boxes: [{xmin, ymin, xmax, ymax, label, proposed, score}] in image pixels; `proposed` marks the model's.
  const s = {
    item: null, view: null, width: 0, height: 0, boxes: [], selected: -1, current: classes[0] || "",
    zoom: 1, panX: 0, panY: 0, drag: null, space: false, stage: null, canvas: null, svg: null,
  };
  window.__lbBoxes = s; // read by the browser tests

  document.querySelectorAll(".box-class").forEach((b) => b.classList.add(tint(b.dataset.label)));

  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  const showing = () => Boolean(s.view && s.item && s.view.dataset.itemId === String(s.item.id));

  function load(item, view) {
    s.item = item;
    s.view = view;
    s.width = item.width || 0;
    s.height = item.height || 0;
    // An undone image comes back with the boxes it had; otherwise the model's, when it sent any.
    const own = item.answer && item.answer.boxes;
    const proposed = !own && item.prediction && item.prediction.boxes;
    s.boxes = (own || proposed || []).map((b) => ({
      xmin: b.xmin, ymin: b.ymin, xmax: b.xmax, ymax: b.ymax, label: b.label, proposed: !own,
      score: !own && typeof b.score === "number" ? b.score : null,
    }));
    s.selected = -1;
    s.drag = null;
    build(item);
  }

  function build(item) {
    const stage = document.createElement("div");
    stage.className = "box-stage";
    stage.tabIndex = -1;
    stage.setAttribute("role", "application");
    stage.setAttribute("aria-label", "Image to box: drag to draw, a class's key types the selected box");
    const canvas = document.createElement("div");
    canvas.className = "box-canvas";
    const img = item._img && item._img.complete ? item._img : new Image();
    if (!img.src) img.src = item.media_url;
    img.alt = item.path;
    img.className = "box-image";
    img.draggable = false;
    const svg = document.createElementNS(SVG, "svg");
    svg.classList.add("box-layer");
    canvas.append(img, svg);
    stage.append(canvas);
    s.view.replaceChildren(stage);
    Object.assign(s, { stage, canvas, svg });
    const ready = () => {
      // The server measured the image at ingest; the browser's reading wins if they ever disagree.
      if (img.naturalWidth) {
        s.width = img.naturalWidth;
        s.height = img.naturalHeight;
      }
      fit();
    };
    if (img.complete && img.naturalWidth) ready();
    else img.addEventListener("load", ready, { once: true });
    if (s.width && s.height) fit();
  }

  function fit() {
    if (!s.stage || !s.width || !s.height) return;
    const w = s.stage.clientWidth || 800;
    const h = s.stage.clientHeight || 600;
    s.zoom = Math.min(w / s.width, h / s.height);
    s.panX = (w - s.width * s.zoom) / 2;
    s.panY = (h - s.height * s.zoom) / 2;
    draw();
  }

  function zoomAt(factor, cx, cy) {
    const z = clamp(s.zoom * factor, 0.05, 40);
    // The image point under (cx, cy) stays there.
    s.panX = cx - ((cx - s.panX) * z) / s.zoom;
    s.panY = cy - ((cy - s.panY) * z) / s.zoom;
    s.zoom = z;
    draw();
  }

  function draw() {
    if (!s.canvas) return;
    s.canvas.style.width = `${s.width}px`;
    s.canvas.style.height = `${s.height}px`;
    s.canvas.style.transform = `translate(${s.panX}px, ${s.panY}px) scale(${s.zoom})`;
    const svg = s.svg;
    svg.setAttribute("viewBox", `0 0 ${s.width} ${s.height}`);
    svg.setAttribute("width", s.width);
    svg.setAttribute("height", s.height);
    svg.replaceChildren();
    const line = 2 / s.zoom; // strokes and handles keep their size on screen at any zoom
    s.boxes.forEach((b, i) => {
      const g = document.createElementNS(SVG, "g");
      g.classList.add("box", tint(b.label));
      if (b.proposed) g.classList.add("proposed");
      if (i === s.selected) g.classList.add("selected");
      g.dataset.box = String(i);
      const r = rectOf(b, line);
      if (b.proposed) r.setAttribute("stroke-dasharray", `${4 / s.zoom} ${3 / s.zoom}`);
      r.classList.add("box-rect");
      const title = document.createElementNS(SVG, "title");
      title.textContent = b.proposed
        ? `${b.label}${b.score != null ? ` ${b.score.toFixed(2)}` : ""} · the model's box: a accepts, x removes, Enter keeps all`
        : b.label;
      r.append(title);
      g.append(r);
      const tag = document.createElementNS(SVG, "text");
      tag.setAttribute("x", b.xmin);
      tag.setAttribute("y", Math.max(b.ymin - 3 / s.zoom, 10 / s.zoom));
      tag.setAttribute("font-size", 11 / s.zoom);
      tag.classList.add("box-tag");
      tag.textContent = b.proposed && b.score != null ? `${b.label} ${b.score.toFixed(2)}` : b.label;
      g.append(tag);
      if (i === s.selected) {
        const hs = HANDLE_PX / s.zoom;
        handles(b).forEach(([name, x, y]) => {
          const h = document.createElementNS(SVG, "rect");
          h.setAttribute("x", x - hs / 2);
          h.setAttribute("y", y - hs / 2);
          h.setAttribute("width", hs);
          h.setAttribute("height", hs);
          h.setAttribute("stroke-width", 1 / s.zoom);
          h.classList.add("box-handle");
          h.dataset.handle = name;
          g.append(h);
        });
      }
      svg.append(g);
    });
    if (s.drag && s.drag.kind === "draw" && s.drag.box) {
      const r = rectOf(s.drag.box, line);
      r.classList.add("box-rect", "drawing");
      const g = document.createElementNS(SVG, "g");
      g.classList.add("box", tint(s.current));
      g.append(r);
      svg.append(g);
    }
    const count = document.getElementById("box-count");
    if (count) {
      const n = s.boxes.length;
      const proposed = s.boxes.filter((b) => b.proposed).length;
      count.textContent = n === 0 ? "no objects" : `${n} box${n === 1 ? "" : "es"}${proposed ? ` (${proposed} the model's)` : ""}`;
    }
    const current = document.getElementById("box-current");
    if (current) current.textContent = s.current;
    document.querySelectorAll(".box-class").forEach((btn) => btn.classList.toggle("current", btn.dataset.label === s.current));
    const zoom = document.getElementById("box-zoom");
    if (zoom) zoom.textContent = `${Math.round(s.zoom * 100)}%`;
  }

  function rectOf(b, line) {
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", b.xmin);
    r.setAttribute("y", b.ymin);
    r.setAttribute("width", b.xmax - b.xmin);
    r.setAttribute("height", b.ymax - b.ymin);
    r.setAttribute("stroke-width", line);
    return r;
  }

  function handles(b) {
    const mx = (b.xmin + b.xmax) / 2;
    const my = (b.ymin + b.ymax) / 2;
    return [["nw", b.xmin, b.ymin], ["n", mx, b.ymin], ["ne", b.xmax, b.ymin], ["e", b.xmax, my],
      ["se", b.xmax, b.ymax], ["s", mx, b.ymax], ["sw", b.xmin, b.ymax], ["w", b.xmin, my]];
  }

  // A screen point as image pixels.
  function toImage(ev) {
    const rect = s.stage.getBoundingClientRect();
    return [(ev.clientX - rect.left - s.panX) / s.zoom, (ev.clientY - rect.top - s.panY) / s.zoom];
  }

  const round = (b) => {
    const r = {
      xmin: clamp(Math.round(Math.min(b.xmin, b.xmax)), 0, s.width),
      ymin: clamp(Math.round(Math.min(b.ymin, b.ymax)), 0, s.height),
      xmax: clamp(Math.round(Math.max(b.xmin, b.xmax)), 0, s.width),
      ymax: clamp(Math.round(Math.max(b.ymin, b.ymax)), 0, s.height),
    };
    return { ...b, ...r };
  };

  function own(i) {
    // A box the person touched is theirs: no longer drawn as the model's.
    s.boxes[i] = { ...s.boxes[i], proposed: false, score: null };
  }

  function select(i) {
    s.selected = i;
    if (i >= 0 && s.boxes[i]) s.current = s.boxes[i].label;
    draw();
  }

  function step(delta) {
    if (!s.boxes.length) return;
    // Reading order: top to bottom, then left to right, so Tab walks the image as a person scans it.
    const order = s.boxes.map((b, i) => i).sort((a, b) => (s.boxes[a].ymin - s.boxes[b].ymin) || (s.boxes[a].xmin - s.boxes[b].xmin));
    const at = order.indexOf(s.selected);
    const next = at === -1 ? (delta > 0 ? 0 : order.length - 1) : (at + delta + order.length) % order.length;
    select(order[next]);
  }

  function removeSelected() {
    if (s.selected < 0) return false;
    s.boxes.splice(s.selected, 1);
    s.selected = Math.min(s.selected, s.boxes.length - 1);
    draw();
    return true;
  }

  function setClass(label) {
    if (!showing()) return;
    s.current = label;
    if (s.selected >= 0) {
      s.boxes[s.selected].label = label;
      own(s.selected);
    }
    draw();
  }

  function nudge(dx, dy) {
    const b = s.boxes[s.selected];
    const w = b.xmax - b.xmin;
    const h = b.ymax - b.ymin;
    const xmin = clamp(b.xmin + dx, 0, s.width - w);
    const ymin = clamp(b.ymin + dy, 0, s.height - h);
    s.boxes[s.selected] = { ...b, xmin, ymin, xmax: xmin + w, ymax: ymin + h };
    own(s.selected);
    draw();
  }

  // Mouse: what a press starts depends on where it lands (a handle, a box, the image) and on Space.
  document.addEventListener("mousedown", (ev) => {
    if (!s.stage || !s.stage.contains(ev.target) || !showing()) return;
    ev.preventDefault();
    const [x, y] = toImage(ev);
    if (ev.button === 1 || s.space) {
      s.drag = { kind: "pan", sx: ev.clientX, sy: ev.clientY, px: s.panX, py: s.panY };
      return;
    }
    if (ev.button !== 0) return;
    const handle = ev.target.closest(".box-handle");
    const group = ev.target.closest(".box");
    if (handle && group) {
      const i = Number(group.dataset.box);
      s.drag = { kind: "resize", i, handle: handle.dataset.handle, start: { ...s.boxes[i] } };
      return;
    }
    if (group && group.dataset.box !== undefined) {
      const i = Number(group.dataset.box);
      select(i);
      s.drag = { kind: "move", i, x, y, start: { ...s.boxes[i] }, moved: false };
      return;
    }
    s.selected = -1;
    s.drag = { kind: "draw", x, y, sx: ev.clientX, sy: ev.clientY, box: null };
    draw();
  });

  document.addEventListener("mousemove", (ev) => {
    const d = s.drag;
    if (!d) return;
    const [x, y] = toImage(ev);
    const cx = clamp(x, 0, s.width);
    const cy = clamp(y, 0, s.height);
    if (d.kind === "pan") {
      s.panX = d.px + ev.clientX - d.sx;
      s.panY = d.py + ev.clientY - d.sy;
    } else if (d.kind === "draw") {
      if (Math.abs(ev.clientX - d.sx) < MIN_SCREEN_PX && Math.abs(ev.clientY - d.sy) < MIN_SCREEN_PX) return;
      d.box = { xmin: Math.min(d.x, cx), ymin: Math.min(d.y, cy), xmax: Math.max(d.x, cx), ymax: Math.max(d.y, cy) };
    } else if (d.kind === "move") {
      const w = d.start.xmax - d.start.xmin;
      const h = d.start.ymax - d.start.ymin;
      const xmin = clamp(d.start.xmin + x - d.x, 0, s.width - w);
      const ymin = clamp(d.start.ymin + y - d.y, 0, s.height - h);
      s.boxes[d.i] = { ...s.boxes[d.i], xmin, ymin, xmax: xmin + w, ymax: ymin + h };
      d.moved = true;
    } else if (d.kind === "resize") {
      const b = { ...d.start };
      if (d.handle.includes("w")) b.xmin = cx;
      if (d.handle.includes("e")) b.xmax = cx;
      if (d.handle.includes("n")) b.ymin = cy;
      if (d.handle.includes("s")) b.ymax = cy;
      s.boxes[d.i] = { ...s.boxes[d.i], xmin: Math.min(b.xmin, b.xmax), xmax: Math.max(b.xmin, b.xmax),
        ymin: Math.min(b.ymin, b.ymax), ymax: Math.max(b.ymin, b.ymax) };
      d.moved = true;
    }
    draw();
  });

  document.addEventListener("mouseup", () => {
    const d = s.drag;
    s.drag = null;
    if (!d) return;
    if (d.kind === "draw" && d.box) {
      const b = round({ ...d.box, label: s.current, proposed: false, score: null });
      if (b.xmax - b.xmin >= 1 && b.ymax - b.ymin >= 1) {
        s.boxes.push(b);
        s.selected = s.boxes.length - 1;
      }
    } else if ((d.kind === "move" || d.kind === "resize") && d.moved) {
      s.boxes[d.i] = round(s.boxes[d.i]);
      if (s.boxes[d.i].xmax - s.boxes[d.i].xmin < 1 || s.boxes[d.i].ymax - s.boxes[d.i].ymin < 1) {
        s.boxes[d.i] = d.start; // resized to nothing: put it back
      } else {
        own(d.i);
      }
    }
    draw();
  });

  document.addEventListener("wheel", (ev) => {
    if (!s.stage || !s.stage.contains(ev.target)) return;
    ev.preventDefault();
    const rect = s.stage.getBoundingClientRect();
    zoomAt(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - rect.left, ev.clientY - rect.top);
  }, { passive: false });

  document.addEventListener("keydown", (ev) => {
    if (ev.key === " " && s.stage && !ev.target.closest("input, textarea, select, button, a")) {
      s.space = true;
      ev.preventDefault();
    }
  });
  document.addEventListener("keyup", (ev) => {
    if (ev.key === " ") s.space = false;
  });
  window.addEventListener("resize", () => fit());

  const byId = (id) => document.getElementById(id);
  const on = (id, fn) => byId(id) && byId(id).addEventListener("click", fn);
  on("remove-box-btn", () => removeSelected());
  on("zoom-in-btn", () => s.stage && zoomAt(1.25, s.stage.clientWidth / 2, s.stage.clientHeight / 2));
  on("zoom-out-btn", () => s.stage && zoomAt(1 / 1.25, s.stage.clientWidth / 2, s.stage.clientHeight / 2));
  on("zoom-fit-btn", () => fit());

  window.LBScreen = {
    render: load,
    // "submit" when the key saves the image, true when the screen used it, false to let label.js try.
    handleKey(ev, key) {
      if (!showing()) return false;
      if (key === "Enter") return "submit";
      if (key === " ") return true;
      if (key === "Tab") {
        step(ev.shiftKey ? -1 : 1);
        return true;
      }
      if (key === "Escape") {
        select(-1);
        return true;
      }
      if (key.startsWith("Arrow")) {
        const n = ev.shiftKey ? 10 : 1;
        const dx = key === "ArrowLeft" ? -n : key === "ArrowRight" ? n : 0;
        const dy = key === "ArrowUp" ? -n : key === "ArrowDown" ? n : 0;
        if (s.selected >= 0) {
          nudge(dx, dy);
        } else {
          s.panX -= dx * 10;
          s.panY -= dy * 10;
          draw();
        }
        return true;
      }
      // Backspace removes the selected box; with none selected it is label.js's undo.
      if (key === "x" || key === "Delete" || (key === "Backspace" && s.selected >= 0)) {
        removeSelected();
        return true;
      }
      if (key === "a") {
        if (s.selected >= 0) {
          own(s.selected);
          step(1);
        }
        return true;
      }
      if (key === "+" || key === "=" || key === "-") {
        zoomAt(key === "-" ? 1 / 1.25 : 1.25, s.stage.clientWidth / 2, s.stage.clientHeight / 2);
        return true;
      }
      if (key === "f") {
        fit();
        return true;
      }
      if (classKeys.has(key)) {
        setClass(classKeys.get(key));
        return true;
      }
      return false;
    },
    pick: setClass, // a class's button
    answer: () => ({
      boxes: s.boxes.map((b) => ({ xmin: b.xmin, ymin: b.ymin, xmax: b.xmax, ymax: b.ymax, label: b.label })),
    }),
  };
})();
