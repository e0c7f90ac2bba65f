// bourse exchange, live numbers in the admin: each element with `data-live-source` (the
// exchange's summary on the overview and its first page) polls that URL every second and
// redraws its own cards, four ten-minute charts and top-bidders table. No framework; the page
// works without it. Loaded once however many exchanges the page shows.
(function () {
  "use strict";
  if (window.bourseLiveLoaded) return;
  window.bourseLiveLoaded = true;
  var COLORS = ["#2a5bd7", "#d7402a"];
  var SVG = "http://www.w3.org/2000/svg";

  function fmt(value, digits) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    return Number(value).toFixed(digits);
  }

  var FORMATS = {
    auctions_per_sec: function (v) { return fmt(v, 1); },
    p50_ms: function (v) { return v === null ? "–" : fmt(v, 2) + " ms"; },
    p99_ms: function (v) { return v === null ? "–" : fmt(v, 2) + " ms"; },
    fill_pct: function (v) { return v === null ? "–" : fmt(v, 1) + "%"; },
    revenue_per_min: function (v) { return fmt(v, 2); },
    ecpm: function (v) { return fmt(v, 2); },
    auctions_total: function (v) { return String(v); },
    billed_total: function (v) { return fmt(v, 2); }
  };

  function draw(svg, points) {
    var names = svg.getAttribute("data-series").split(",");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var max = 0;
    names.forEach(function (name) {
      points.forEach(function (p) { if (p[name] !== null && p[name] > max) max = p[name]; });
    });
    if (points.length < 2) return;
    max = max > 0 ? max * 1.1 : 1;
    var t0 = points[0].t, span = Math.max(points[points.length - 1].t - t0, 1);
    names.forEach(function (name, i) {
      var d = "", pen = "M";
      points.forEach(function (p) {
        if (p[name] === null) { pen = "M"; return; }
        var x = ((p.t - t0) / span) * 300, y = 100 - (p[name] / max) * 96;
        d += pen + x.toFixed(1) + " " + y.toFixed(1) + " ";
        pen = "L";
      });
      var path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", COLORS[i % COLORS.length]);
      path.setAttribute("stroke-width", "1.5");
      path.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(path);
    });
    text(svg, 2, 10, "start", "max " + fmt(max / 1.1, 2));
    // The time span the chart covers, at its bottom corners.
    text(svg, 2, 98, "start", clock(t0));
    text(svg, 298, 98, "end", clock(points[points.length - 1].t));
  }

  function text(svg, x, y, anchor, content) {
    var label = document.createElementNS(SVG, "text");
    label.setAttribute("x", String(x));
    label.setAttribute("y", String(y));
    label.setAttribute("font-size", "9");
    label.setAttribute("fill", "#5b6475");
    label.setAttribute("text-anchor", anchor);
    label.textContent = content;
    svg.appendChild(label);
  }

  function clock(ms) {
    return new Date(ms).toTimeString().slice(0, 8);
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  // One live box: its points so far and the time of the newest.
  function Live(box) {
    this.box = box;
    this.source = box.getAttribute("data-live-source");
    this.points = [];
    this.last = 0;
  }

  Live.prototype.update = function (view) {
    var box = this.box;
    var points = this.points = this.points.concat(view.points).slice(-600);
    if (points.length) this.last = points[points.length - 1].t;
    var now = points.length ? points[points.length - 1] : {};
    now.auctions_total = view.auctions_total;
    now.billed_total = view.billed_total;
    box.querySelectorAll("[data-live]").forEach(function (el) {
      var name = el.getAttribute("data-live");
      if (name in now) el.textContent = FORMATS[name](now[name]);
    });
    box.querySelectorAll("svg[data-series]").forEach(function (svg) { draw(svg, points); });
    var body = box.querySelector(".top-bidders tbody");
    if (body) {
      while (body.firstChild) body.removeChild(body.firstChild);
      view.top_bidders.forEach(function (b) {
        var tr = document.createElement("tr");
        [b.name, String(b.wins), String(b.requests),
         b.bid_rate_pct === null ? "–" : fmt(b.bid_rate_pct, 1) + "%",
         b.timeout_pct === null ? "–" : fmt(b.timeout_pct, 1) + "%",
         String(b.errors), fmt(b.avg_win_cpm, 2)].forEach(function (text) {
          tr.appendChild(cell(text));
        });
        body.appendChild(tr);
      });
    }
    document.body.setAttribute("data-live-points", String(points.length));
  };

  Live.prototype.status = function (text) {
    var status = this.box.querySelector(".live-status");
    if (status) status.textContent = text;
  };

  Live.prototype.poll = function () {
    var live = this;
    fetch(live.source + "?after=" + live.last, { credentials: "same-origin" })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("signed out or unavailable");
        return r.json();
      })
      .then(function (view) {
        live.update(view);
        live.status("Live: updated every second from this node's metrics.");
      })
      .catch(function () {
        live.status("Live updates paused: reload the page.");
      })
      .then(function () { setTimeout(function () { live.poll(); }, 1000); });
  };

  function start() {
    document.querySelectorAll("[data-live-source]").forEach(function (box) {
      new Live(box).poll();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
