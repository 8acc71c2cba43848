// Batch review: every tile starts ticked; click or Space unticks; arrows move; Enter confirms.
(function () {
  "use strict";
  const form = document.getElementById("batch-form");
  if (!form) return;
  const grid = document.getElementById("batch-grid");
  const tiles = Array.from(grid.querySelectorAll(".batch-tile"));
  const nAccepted = document.getElementById("n-accepted");
  const nRejected = document.getElementById("n-rejected");
  const started = performance.now();
  let submitted = false;

  function refresh() {
    let accepted = 0;
    tiles.forEach((tile) => {
      const box = tile.querySelector(".batch-check");
      tile.classList.toggle("rejected", !box.checked);
      tile.setAttribute("aria-checked", box.checked ? "true" : "false");
      if (box.checked) accepted += 1;
    });
    nAccepted.textContent = accepted;
    nRejected.textContent = tiles.length - accepted;
  }

  function toggle(tile) {
    const box = tile.querySelector(".batch-check");
    box.checked = !box.checked;
    refresh();
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
    tile.querySelector(".batch-check").addEventListener("change", refresh);
    tile.addEventListener("focus", () => tiles.forEach((t, i) => t.setAttribute("tabindex", i === index ? "0" : "-1")));
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input[type=search], select, textarea")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
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
        tiles.forEach((t) => { t.querySelector(".batch-check").checked = true; });
        refresh();
        break;
      case "Enter":
        event.preventDefault();
        if (!submitted) form.requestSubmit();
        break;
      default:
    }
  });

  document.getElementById("tick-all").addEventListener("click", () => {
    tiles.forEach((t) => { t.querySelector(".batch-check").checked = true; });
    refresh();
  });

  form.addEventListener("submit", (event) => {
    if (submitted) { event.preventDefault(); return; }
    submitted = true;
    document.getElementById("time-taken").value = ((performance.now() - started) / 1000).toFixed(2);
    document.getElementById("confirm-batch").disabled = true;
  });

  refresh();
  // Tests and styles can tell a grid whose keys work from one still waiting for this script.
  grid.dataset.ready = "true";
})();
