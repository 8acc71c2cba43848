// Check labels: relabel, keep or exclude in place. Each form posts to the API instead (relabel is a judgement
// with the page's reason); the card then says what happened and its actions go. Without JavaScript the forms
// post to the page, which redirects back.
(() => {
  "use strict";
  const findings = document.getElementById("findings");
  if (!findings) return;
  const project = findings.dataset.project;
  const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] || "";
  const REASON = "label check: the model, fitted without this label, found it unlikely";

  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new Error((data && data.detail) || `HTTP ${res.status}`);
    return data;
  }

  function settle(card, message, ok = true) {
    const outcome = card.querySelector(".finding-outcome");
    outcome.textContent = message;
    outcome.hidden = false;
    outcome.className = `finding-outcome ${ok ? "ok-text" : "error-text"}`;
    if (ok) {
      card.classList.add("settled");
      card.querySelector(".finding-actions").remove();
    }
  }

  findings.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-action]");
    if (!form) return;
    event.preventDefault();
    const card = form.closest(".finding");
    const item = Number(card.dataset.item);
    const buttons = card.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      if (form.dataset.action === "relabel") {
        const label = form.querySelector("select[name=label]").value;
        if (!label) throw new Error("Choose the right class first.");
        await post(`/api/projects/${project}/judgements/`, { item, label, reason: REASON });
        card.querySelector(".finding-given").textContent = label;
        settle(card, `Relabelled ${label}.`);
      } else if (form.dataset.action === "keep") {
        const judgement = Number(form.querySelector("input[name=judgement]").value);
        await post(`/api/projects/${project}/label-check/keep/`, { item, judgement });
        settle(card, "Kept as is: not questioned again unless the label changes.");
      } else {
        await post(`/api/projects/${project}/label-check/exclude/`, { item, reason: "label check" });
        settle(card, "Excluded from the project.");
      }
    } catch (err) {
      settle(card, err.message, false);
      buttons.forEach((b) => (b.disabled = false));
    }
  });
})();
