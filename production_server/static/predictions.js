// Draw the predicted probability of each row, coloured by its true outcome.
(function () {
  const rows = JSON.parse(document.getElementById("chart-data").textContent);
  const colour = (r) => (r.truth === 1 ? "#c0392b" : "#2e86c1");
  new Chart(document.getElementById("chart"), {
    type: "bar",
    data: {
      labels: rows.map((r) => "row " + r.row),
      datasets: [{
        label: "predicted probability of diabetes (bar colour: true outcome, red = diabetic)",
        data: rows.map((r) => r.probability),
        backgroundColor: rows.map(colour),
      }],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { y: { min: 0, max: 1, title: { display: true, text: "probability" } } },
    },
  });
  document.getElementById("chart").dataset.rendered = "true";
})();
