// The console dashboard's charts: each <div data-chart> reads its data from the
// <script type="application/json" id="chart-NAME-data"> beside it. Without JavaScript,
// or without ECharts, the tables under the charts say the same.
"use strict";
(function () {
  if (typeof echarts === "undefined") return;
  const yuan = (fen) => (fen / 100).toFixed(2);

  const options = {
    enrolments: (data) => ({
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.days },
      yAxis: { type: "value", minInterval: 1 },
      series: data.series.map((s) => ({ name: s.name, type: "bar", data: s.values })),
    }),
    credit: (data) => ({
      tooltip: { trigger: "axis", valueFormatter: (value) => "¥" + value },
      legend: { top: 0 },
      xAxis: { type: "category", data: data.days },
      yAxis: { type: "value" },
      series: data.series.map((s) => ({ name: s.name, type: "line", data: s.values.map(yuan) })),
    }),
    ladder: (data) => ({
      tooltip: { trigger: "item" },
      series: [{
        type: "funnel", sort: "none", left: "5%", width: "60%", minSize: "12%", gap: 2,
        label: { show: true, position: "right", formatter: "{b}: {c}", color: "#1d2433" },
        data: data.stages,
      }],
    }),
  };

  for (const box of document.querySelectorAll("[data-chart]")) {
    const source = document.getElementById(box.id + "-data");
    const build = options[box.dataset.chart];
    if (!source || !build) continue;
    box.closest(".chart-box").classList.add("drawn"); // shows the box: ECharts takes its size
    const chart = echarts.init(box, null, { renderer: "canvas" });
    chart.setOption(build(JSON.parse(source.textContent)));
    window.addEventListener("resize", () => chart.resize());
  }
})();
