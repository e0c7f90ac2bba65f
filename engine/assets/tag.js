/* bourse ad tag. Publisher snippet:
 *   <div class="bourse-ad" data-placement="PLACEMENT-ID" data-sizes="300x250,300x600"></div>
 *   <script async src="https://YOUR-BOURSE/tag.js"></script>
 * Optional on the script tag: data-consent="denied" (no first-party user id is kept).
 * The tag asks bourse once for every slot on the page, renders each winner in a sandboxed
 * iframe (no access to this page), fires the impression beacon once the ad has rendered and
 * a viewability beacon once it has been at least half in view for a second. Empty slots stay
 * collapsed. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__bourseTagLoaded) return;
  window.__bourseTagLoaded = true;
  var base = new URL(script.src).origin;
  var COOKIE = "bourse_uid";

  function consentDenied() {
    if (script.getAttribute("data-consent") === "denied") return true;
    // Global Privacy Control: the browser says the user opted out.
    return navigator.globalPrivacyControl === true;
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b + 256).toString(16).slice(1);
    }).join("");
  }

  // A first-party id on the publisher's own domain, only with consent; otherwise none at all.
  function userId() {
    if (consentDenied()) return null;
    var id = readCookie(COOKIE);
    if (!id || !/^[0-9a-f]{32}$/.test(id)) {
      id = randomId();
      document.cookie = COOKIE + "=" + id + "; max-age=" + 365 * 86400 + "; path=/; SameSite=Lax" +
        (location.protocol === "https:" ? "; Secure" : "");
    }
    return id;
  }

  function parseSizes(text) {
    var sizes = [];
    (text || "").split(",").forEach(function (part) {
      var m = /^\s*(\d+)x(\d+)\s*$/.exec(part);
      if (m) sizes.push([+m[1], +m[2]]);
    });
    return sizes;
  }

  function beacon(url) {
    if (navigator.sendBeacon && navigator.sendBeacon(url)) return;
    fetch(url, { method: "POST", keepalive: true, mode: "no-cors" }).catch(function () {});
  }

  function watchViewability(frame, url) {
    if (!url || !("IntersectionObserver" in window)) return;
    var timer = null;
    var done = false;
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (done) return;
        if (entry.intersectionRatio >= 0.5) {
          if (!timer) timer = setTimeout(function () {
            done = true;
            observer.disconnect();
            beacon(url);
          }, 1000);
        } else if (timer) {
          clearTimeout(timer);
          timer = null;
        }
      });
    }, { threshold: [0, 0.5, 1] });
    observer.observe(frame);
  }

  function render(slot, ad) {
    var frame = document.createElement("iframe");
    // No allow-same-origin: the creative runs in an opaque origin and cannot touch this page.
    frame.setAttribute("sandbox", "allow-scripts allow-popups allow-popups-to-escape-sandbox " +
      "allow-top-navigation-by-user-activation");
    frame.setAttribute("width", ad.w);
    frame.setAttribute("height", ad.h);
    frame.setAttribute("scrolling", "no");
    frame.setAttribute("title", "Advertisement");
    frame.setAttribute("data-bourse-imp", ad.imp);
    frame.style.border = "0";
    frame.style.display = "block";
    frame.srcdoc = ad.html;
    var fired = false;
    frame.addEventListener("load", function () {
      if (fired) return;
      fired = true;
      beacon(ad.imp);
      watchViewability(frame, ad.view);
    });
    slot.style.display = "";
    slot.style.width = ad.w + "px";
    slot.style.height = ad.h + "px";
    slot.appendChild(frame);
  }

  function run() {
    var elements = document.querySelectorAll(".bourse-ad[data-placement]:not([data-bourse-done])");
    if (!elements.length) return;
    var slots = [];
    var byId = {};
    Array.prototype.forEach.call(elements, function (el, i) {
      el.setAttribute("data-bourse-done", "1");
      // Collapsed until an ad arrives.
      el.style.display = "none";
      var id = el.id || "bourse-slot-" + i;
      byId[id] = el;
      slots.push({ id: id, placement: el.getAttribute("data-placement"),
        sizes: parseSizes(el.getAttribute("data-sizes")) });
    });
    var body = { page: location.href, ref: document.referrer || null, slots: slots,
      uid: userId(), consent: { denied: consentDenied() } };
    // text/plain keeps this a CORS "simple request": no preflight round trip.
    fetch(base + "/ad", { method: "POST", body: JSON.stringify(body),
      headers: { "content-type": "text/plain" }, credentials: "omit" })
      .then(function (r) { return r.status === 200 ? r.json() : { slots: [] }; })
      .then(function (answer) {
        (answer.slots || []).forEach(function (ad) {
          if (byId[ad.id]) render(byId[ad.id], ad);
        });
      })
      .catch(function () { /* no ads: slots stay collapsed */ });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
})();
