// bourse exchange, live numbers in the admin: each element with `data-live-source` (the
// exchange's summary on the overview and its first page) polls that URL every second and
// updates its cards and top-bidders table (`charts.js` draws the charts). No framework; the
// page works without it. Loaded once however many exchanges the page shows.
(function () {
  "use strict";
  if (window.bourseLiveLoaded) return;
  window.bourseLiveLoaded = true;

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

  function cell(text, label) {
    var td = document.createElement("td");
    td.textContent = text;
    td.setAttribute("data-label", label);
    return td;
  }

  var TOP_LABELS = ["Bidder", "Wins", "Requests", "Bid rate", "Timeouts", "Errors", "Clearing eCPM"];

  // One live box: its points so far and the time of the newest.
  function Live(box) {
    this.box = box;
    this.source = box.getAttribute("data-live-source");
    this.base = this.source.replace(/\/live\.json$/, "");
    this.points = 0;
    this.last = 0;
  }

  Live.prototype.update = function (view) {
    var box = this.box, base = this.base;
    var points = view.points;
    this.points += points.length;
    if (points.length) this.last = points[points.length - 1].t;
    var now = points.length ? points[points.length - 1] : {};
    now.auctions_total = view.auctions_total;
    now.billed_total = view.billed_total;
    box.querySelectorAll("[data-live]").forEach(function (el) {
      var name = el.getAttribute("data-live");
      if (name in now) el.textContent = FORMATS[name](now[name]);
    });
    var body = box.querySelector(".top-bidders tbody");
    if (body) {
      while (body.firstChild) body.removeChild(body.firstChild);
      view.top_bidders.forEach(function (b) {
        var tr = document.createElement("tr");
        var name = cell("", TOP_LABELS[0]);
        name.className = "key";
        var link = document.createElement("a");
        link.href = base + "/bidders/view?name=" + encodeURIComponent(b.name);
        link.textContent = b.name;
        name.appendChild(link);
        tr.appendChild(name);
        [String(b.wins), String(b.requests),
         b.bid_rate_pct === null ? "–" : fmt(b.bid_rate_pct, 1) + "%",
         b.timeout_pct === null ? "–" : fmt(b.timeout_pct, 1) + "%",
         String(b.errors), fmt(b.avg_win_cpm, 2)].forEach(function (text, i) {
          tr.appendChild(cell(text, TOP_LABELS[i + 1]));
        });
        body.appendChild(tr);
      });
    }
    document.body.setAttribute("data-live-points", String(this.points));
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
