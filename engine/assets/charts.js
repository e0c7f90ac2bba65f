// bourse exchange, charts in the admin: each `.chart-panel` (the live page, the overview's
// summary, a bidder's, publisher's or placement's page) fetches `series.json` for its range, and
// the previous period when comparing, and draws each `figure[data-chart]` with uPlot, the
// charting library the admin shell embeds: time in UTC, axes with units, clearing eCPM on its own axis,
// a legend that reads the values under the cursor, the previous period dashed. The range
// picker and the compare link are plain links that reload the page; without script the page's
// table holds the same figures. Loaded once however many panels the page shows.
(function () {
  "use strict";
  if (window.bourseChartsLoaded) return;
  window.bourseChartsLoaded = true;
  var COLORS = ["#2a5bd7", "#d7402a", "#178a3c", "#8a5a00"];
  var HEIGHT = 200;

  function fmt(value, digits) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    return Number(value).toFixed(digits);
  }

  // A tick label: short, with k and M for large values.
  function tick(value) {
    var abs = Math.abs(value);
    if (abs >= 1e6) return fmt(value / 1e6, 1) + "M";
    if (abs >= 1e4) return fmt(value / 1e3, 0) + "k";
    if (abs >= 100) return fmt(value, 0);
    if (abs >= 1) return String(Math.round(value * 100) / 100);
    return String(Math.round(value * 1000) / 1000);
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  // Time ticks in UTC, 24-hour: the time within a day, the date too across days.
  function timeTicks(u, ticks) {
    var span = ticks.length > 1 ? ticks[ticks.length - 1] - ticks[0] : 0;
    return ticks.map(function (t) {
      var d = new Date(t * 1000);
      var time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
      if (span < 120) time += ":" + pad(d.getUTCSeconds());
      return span > 86400 ? pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + time : time;
    });
  }

  // What each chart draws: its axes (label with unit, fixed range or from zero up) and series
  // (the figure of series.json, legend label, unit, decimals, axis).
  function catalogue(currency) {
    var percent = { label: "%", min: 0, max: 100 };
    return {
      auctions: {
        axes: [{ label: "auctions/s" }],
        series: [{ key: "auctions_per_sec", label: "Auctions/s", digits: 1 }]
      },
      latency: {
        axes: [{ label: "ms" }],
        series: [
          { key: "p50_ms", label: "p50", unit: " ms", digits: 2 },
          { key: "p99_ms", label: "p99", unit: " ms", digits: 2 }
        ]
      },
      fill: {
        axes: [percent],
        series: [{ key: "fill_pct", label: "Fill rate", unit: "%", digits: 1 }]
      },
      revenue: {
        axes: [{ label: currency + " per minute" }, { label: "Clearing eCPM, " + currency, right: true }],
        series: [
          { key: "revenue_per_min", label: "Cleared/min, gross", unit: " " + currency, digits: 2 },
          { key: "ecpm", label: "Clearing eCPM", unit: " " + currency, digits: 2, axis: 1 }
        ]
      },
      calls: {
        axes: [{ label: "calls/s" }],
        series: [
          { key: "requests_per_sec", label: "Calls/s", digits: 2 },
          { key: "failed_per_sec", label: "Failed/s", digits: 2 }
        ]
      },
      rates: {
        axes: [percent],
        series: [
          { key: "bid_rate_pct", label: "Bid rate", unit: "%", digits: 1 },
          { key: "win_rate_pct", label: "Win rate", unit: "%", digits: 1 },
          { key: "failed_pct", label: "Failed", unit: "%", digits: 1 }
        ]
      },
      billed: {
        axes: [{ label: "impressions/min" }],
        series: [{ key: "billed_per_min", label: "Billed/min", digits: 2 }]
      }
    };
  }

  function seriesOption(spec, index, previous) {
    return {
      label: spec.label + (previous ? ", previous period" : ""),
      scale: "y" + (spec.axis || 0),
      stroke: COLORS[index % COLORS.length],
      width: previous ? 1 : 1.5,
      dash: previous ? [6, 4] : undefined,
      spanGaps: false,
      value: function (u, v) { return v === null || v === undefined ? "–" : fmt(v, spec.digits) + (spec.unit || ""); }
    };
  }

  function options(spec, width, compare) {
    var scales = { x: { time: true } };
    var axes = [{ values: timeTicks, space: 70 }];
    spec.axes.forEach(function (axis, i) {
      scales["y" + i] = {
        range: function (u, min, max) {
          if (axis.max !== undefined) return [axis.min, axis.max];
          return [0, max > 0 ? max * 1.1 : 1];
        }
      };
      axes.push({
        scale: "y" + i,
        label: axis.label,
        side: axis.right ? 1 : 3,
        grid: { show: i === 0 },
        size: 56,
        values: function (u, ticks) { return ticks.map(tick); }
      });
    });
    var series = [{ label: "Time (UTC)", value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" }];
    spec.series.forEach(function (s, i) { series.push(seriesOption(s, i, false)); });
    if (compare) spec.series.forEach(function (s, i) { series.push(seriesOption(s, i, true)); });
    return {
      width: width,
      height: HEIGHT,
      scales: scales,
      axes: axes,
      series: series,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
    };
  }

  // The chart's columns: time, this period's series, then the previous period's, aligned.
  function columns(spec, view) {
    var current = [view.current.t];
    spec.series.forEach(function (s) { current.push(view.current[s.key] || view.current.t.map(function () { return null; })); });
    if (!view.previous) return current;
    var previous = [view.previous.t];
    spec.series.forEach(function (s) { previous.push(view.previous[s.key] || view.previous.t.map(function () { return null; })); });
    return uPlot.join([current, previous]);
  }

  function Panel(panel) {
    this.panel = panel;
    this.source = panel.getAttribute("data-series-source");
    this.range = panel.getAttribute("data-range");
    this.compare = panel.getAttribute("data-compare") === "1";
    this.specs = catalogue(panel.getAttribute("data-currency") || "");
    this.plots = [];
  }

  Panel.prototype.url = function () {
    return this.source + "&range=" + encodeURIComponent(this.range) + (this.compare ? "&compare=1" : "");
  };

  Panel.prototype.draw = function (view) {
    var panel = this;
    var note = panel.panel.querySelector("[data-series-note]");
    if (note) {
      note.textContent = view.note || "";
      note.hidden = !view.note;
    }
    panel.panel.querySelectorAll("figure[data-chart]").forEach(function (figure, i) {
      var spec = panel.specs[figure.getAttribute("data-chart")];
      var box = figure.querySelector(".chart-plot");
      if (!spec || !box) return;
      var data = columns(spec, view);
      var width = Math.max(box.clientWidth, 200);
      var plot = panel.plots[i];
      if (!plot) {
        plot = panel.plots[i] = new uPlot(options(spec, width, !!view.previous), data, box);
        // uPlot draws its axes on the canvas: name their units for readers of the DOM too.
        figure.setAttribute("data-axes", spec.axes.map(function (a) { return a.label; }).join(" | "));
      } else {
        plot.setData(data);
      }
      // The whole range, even where no data is held yet.
      plot.setScale("x", { min: view.from_ms / 1000, max: view.to_ms / 1000 });
    });
    panel.panel.setAttribute("data-charts-drawn", String(view.current.t.length));
  };

  Panel.prototype.resize = function () {
    var panel = this;
    panel.panel.querySelectorAll("figure[data-chart]").forEach(function (figure, i) {
      var plot = panel.plots[i], box = figure.querySelector(".chart-plot");
      if (plot && box) plot.setSize({ width: Math.max(box.clientWidth, 200), height: HEIGHT });
    });
  };

  Panel.prototype.poll = function () {
    var panel = this;
    fetch(panel.url(), { credentials: "same-origin" })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("signed out or unavailable");
        return r.json();
      })
      .then(function (view) { panel.draw(view); })
      .catch(function () {
        var note = panel.panel.querySelector("[data-series-note]");
        if (note) {
          note.textContent = "The charts could not be updated: reload the page.";
          note.hidden = false;
        }
      })
      .then(function () {
        // Seconds move fast; minutes do not.
        setTimeout(function () { panel.poll(); }, panel.range === "15m" ? 5000 : 60000);
      });
  };

  function start() {
    if (typeof uPlot === "undefined") return;
    var panels = [];
    document.querySelectorAll(".chart-panel[data-series-source]").forEach(function (element) {
      var panel = new Panel(element);
      panels.push(panel);
      panel.poll();
    });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () { panels.forEach(function (p) { p.resize(); }); }, 150);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
