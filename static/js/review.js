// Batch review: every tile starts ticked; click or Space unticks; a class key (or the tile's picker) gives
// a wrong tile its right class; arrows move; Enter confirms.
(function () {
  "use strict";
  const form = document.getElementById("batch-form");
  if (!form) return;
  const grid = document.getElementById("batch-grid");
  const tiles = Array.from(grid.querySelectorAll(".batch-tile"));
  const nAccepted = document.getElementById("n-accepted");
  const nRejected = document.getElementById("n-rejected");
  const nCorrected = document.getElementById("n-corrected");
  const configNode = document.getElementById("lb-review-config");
  const config = configNode ? JSON.parse(configNode.textContent) : {};
  const keyToClass = new Map();
  (config.keys || []).forEach((entry) => entry.keys.forEach((k) => keyToClass.set(k, entry.label)));
  const started = performance.now();
  let submitted = false;
  // An Enter held or pressed twice for the previous batch must not confirm this one unseen: Enter counts once
  // the grid has been on screen a moment and the person has moved (mouse, wheel, touch or a key other than
  // Enter). A click on Confirm always counts.
  const ARM_MS = Number(config.enter_arm_ms || 1200);
  let looked = false;
  const hint = document.getElementById("enter-hint");
  function enterArmed() {
    const armed = looked && performance.now() - started >= ARM_MS;
    if (armed) grid.dataset.enterArmed = "true";  // for styles and tests
    return armed;
  }
  function look() { looked = true; enterArmed(); }
  ["pointermove", "wheel", "touchstart"].forEach((type) =>
    document.addEventListener(type, look, { passive: true, once: true }));
  setTimeout(enterArmed, ARM_MS + 10);

  function refresh() {
    let accepted = 0;
    let corrected = 0;
    tiles.forEach((tile) => {
      const box = tile.querySelector(".batch-check");
      const picker = tile.querySelector(".batch-correct");
      const correction = picker ? picker.value : "";
      tile.classList.toggle("rejected", !box.checked && !correction);
      tile.classList.toggle("corrected", Boolean(correction));
      tile.setAttribute("aria-checked", box.checked ? "true" : "false");
      if (correction) corrected += 1;
      else if (box.checked) accepted += 1;
    });
    nAccepted.textContent = accepted;
    if (nCorrected) nCorrected.textContent = corrected;
    nRejected.textContent = tiles.length - accepted - corrected;
  }

  // The tile's answer: null = the batch's class (ticked), "" = not it (unticked), or another class.
  function answer(tile, value) {
    const box = tile.querySelector(".batch-check");
    const picker = tile.querySelector(".batch-correct");
    if (picker) picker.value = value || "";
    box.checked = value === null;
    refresh();
  }

  function toggle(tile) {
    const box = tile.querySelector(".batch-check");
    const picker = tile.querySelector(".batch-correct");
    // Space on a corrected tile takes the correction back (ticked again); otherwise it flips the tick.
    answer(tile, (picker && picker.value) || !box.checked ? null : "");
  }

  function focusTile(index) {
    if (index < 0 || index >= tiles.length) return;
    tiles.forEach((t, i) => t.setAttribute("tabindex", i === index ? "0" : "-1"));
    tiles[index].focus();
  }

  function columns() {
    const top = tiles[0].offsetTop;
    const n = tiles.findIndex((t) => t.offsetTop !== top);
    return n === -1 ? tiles.length : n;
  }

  tiles.forEach((tile, index) => {
    tile.setAttribute("role", "checkbox");
    tile.querySelector(".batch-check").addEventListener("change", () => {
      const picker = tile.querySelector(".batch-correct");
      if (picker && tile.querySelector(".batch-check").checked) picker.value = "";
      refresh();
    });
    const picker = tile.querySelector(".batch-correct");
    if (picker) {
      picker.addEventListener("click", (event) => event.stopPropagation());  // the tile is a label: no toggle
      picker.addEventListener("change", () => answer(tile, picker.value || null));
    }
    tile.addEventListener("focus", () => tiles.forEach((t, i) => t.setAttribute("tabindex", i === index ? "0" : "-1")));
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input[type=search], select, textarea")) return;
    if (document.querySelector("dialog[open]")) return;  // the key list (?) is open: keys are for it
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key !== "Enter") look();
    const current = tiles.indexOf(document.activeElement);
    const at = current === -1 ? 0 : current;
    switch (event.key) {
      case " ":
      case "x":
        if (current !== -1) { event.preventDefault(); toggle(tiles[current]); }
        break;
      case "ArrowRight": event.preventDefault(); focusTile(at + (current === -1 ? 0 : 1)); break;
      case "ArrowLeft": event.preventDefault(); focusTile(at - 1); break;
      case "ArrowDown": event.preventDefault(); focusTile(Math.min(tiles.length - 1, at + columns())); break;
      case "ArrowUp": event.preventDefault(); focusTile(Math.max(0, at - columns())); break;
      case "a":
        tiles.forEach((t) => answer(t, null));
        break;
      case "Enter":
        event.preventDefault();
        if (event.repeat || !enterArmed()) {
          if (hint) hint.hidden = false;
          break;
        }
        if (!submitted) form.requestSubmit();
        break;
      default:
        if (current !== -1 && keyToClass.has(event.key.toLowerCase())) {
          event.preventDefault();
          const name = keyToClass.get(event.key.toLowerCase());
          answer(tiles[current], name === config.label ? null : name);
        }
    }
  });

  document.getElementById("tick-all").addEventListener("click", () => tiles.forEach((t) => answer(t, null)));

  form.addEventListener("submit", (event) => {
    if (submitted) { event.preventDefault(); return; }
    submitted = true;
    document.getElementById("time-taken").value = ((performance.now() - started) / 1000).toFixed(2);
    document.getElementById("confirm-batch").disabled = true;
  });

  if (hint) grid.addEventListener("pointermove", () => { hint.hidden = true; }, { once: true });
  refresh();
  // Tests and styles can tell a grid whose keys work from one still waiting for this script.
  grid.dataset.ready = "true";
})();
