// Behaviour every page shares, kept out of the HTML so the Content-Security-Policy can forbid inline
// script and style: selects that submit their form on change, and bars drawn to a width the server gave.
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.requestSubmit());
  });
  document.querySelectorAll("[data-width]").forEach((node) => {
    const width = Number(node.dataset.width);
    if (Number.isFinite(width)) node.style.width = Math.max(0, Math.min(100, width)) + "%";
  });

  // "?" on any screen lists its keys (templates/base.html's dialog; each screen adds its own rows).
  const help = document.getElementById("keys-help");
  if (help && typeof help.showModal === "function") {
    const open = () => { if (!help.open) help.showModal(); };
    document.addEventListener("keydown", (event) => {
      if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.target.closest("input, textarea, select, [contenteditable]")) return;
      event.preventDefault();
      if (help.open) help.close(); else open();
    });
    const button = document.getElementById("keys-button");
    if (button) button.addEventListener("click", open);
  }
})();
