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
})();
