// The model card on the project page: draws the learning curve (Chart.js, served from static/) and
// refreshes the card in place while the worker embeds or trains, so progress is visible without reloads.
(() => {
  "use strict";
  let chart = null;

  function drawCurve() {
    const data = document.getElementById("learning-curve-data");
    const canvas = document.getElementById("learning-curve");
    if (chart) { chart.destroy(); chart = null; }
    if (!data || !canvas || !window.Chart) return;
    const points = JSON.parse(data.textContent);
    chart = new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: [{
          label: "TEST accuracy",
          data: points.map((p) => ({ x: p.labels, y: p.accuracy * 100, version: p.version })),
          borderColor: "#f59e0b",
          backgroundColor: "rgba(245, 158, 11, .15)",
          fill: true,
          tension: 0.2,
          pointRadius: 3,
        }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        scales: {
          x: { type: "linear", title: { display: true, text: "labels (train + test)" }, beginAtZero: true },
          y: { min: 0, max: 100, title: { display: true, text: "accuracy on TEST (%)" } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (ctx) => `v${ctx.raw.version}: ${ctx.raw.y.toFixed(1)}% at ${ctx.raw.x} labels`,
            },
          },
        },
      },
    });
    window.__lbChart = chart; // lets tests and curious people inspect what is drawn
  }

  async function refresh() {
    const card = document.getElementById("model-card");
    if (!card || document.hidden) return;
    try {
      const res = await fetch(card.dataset.refreshUrl, { credentials: "same-origin" });
      if (!res.ok) return;
      const html = await res.text();
      const doc = new DOMParser().parseFromString(html, "text/html");
      const next = doc.getElementById("model-card");
      if (next && next.dataset.signature !== card.dataset.signature) {
        const open = card.querySelector("details.versions")?.open;
        card.replaceWith(next);
        // The proposals card comes with the model card: a new version changes both.
        const proposals = document.getElementById("proposals");
        const nextProposals = doc.getElementById("proposals");
        const typing = proposals && proposals.contains(document.activeElement) && document.activeElement.matches("input, select");
        if (proposals && nextProposals && !typing) proposals.replaceWith(nextProposals);
        if (open) next.querySelector("details.versions")?.setAttribute("open", "");
        drawCurve();
      }
    } catch (err) {
      /* a missed refresh is retried on the next tick */
    }
  }

  // Actions that cannot be seen afterwards (auto-labels nobody looks at, withdrawing them) ask first.
  // Delegated: the card is replaced in place on every refresh.
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  drawCurve();
  setInterval(refresh, 4000);
})();
