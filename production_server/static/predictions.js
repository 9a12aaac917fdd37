// Draw the predicted probability of each row, coloured by its true outcome.
// One dataset per true outcome (grouped: false keeps one full-width bar per row),
// so Chart.js's own legend names both colours.
(function () {
  const rows = JSON.parse(document.getElementById("chart-data").textContent);
  const canvas = document.getElementById("chart");
  const outcome = (truth, label, colour) => ({
    label: label,
    data: rows.map((r) => (r.truth === truth ? r.probability : null)),
    backgroundColor: colour,
    grouped: false,
  });
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: rows.map((r) => "row " + r.row),
      datasets: [
        outcome(1, "truly diabetic", "#c0392b"),
        outcome(0, "truly not diabetic", "#2e86c1"),
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        y: { min: 0, max: 1, title: { display: true, text: "predicted probability of diabetes" } },
      },
      plugins: {
        title: { display: true, text: "Predicted probability per row (0.5 and above: predicted diabetic)" },
      },
    },
  });
  canvas.dataset.rendered = "true";
})();
