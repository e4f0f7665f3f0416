// The technician page (/tech): refresh the live columns from /tech/live.json every 2 s.
// No inline script or style (CSP); without this file the page is complete and reloads by hand.
(function () {
  "use strict";
  var page = document.getElementById("techpage");
  if (!page) { return; }
  var url = page.getAttribute("data-live");

  function text(el, value) { if (el && el.textContent !== value) { el.textContent = value; } }

  function scanText(t) {
    if (!t) { return ""; }
    if (t.state === "received") {
      var parts = [];
      for (var k in t.data) { if (Object.prototype.hasOwnProperty.call(t.data, k)) { parts.push(k + "=" + t.data[k]); } }
      return "Received 已收到: " + t.kind + " " + parts.join(" ");
    }
    if (t.state === "waiting") { return "Waiting 等待中 (" + t.seconds + " s)"; }
    return "Nothing received 未收到";
  }

  function apply(doc) {
    doc.devices.forEach(function (d) {
      var row = document.querySelector('tr[data-dev="' + CSS.escape(d.id) + '"]');
      if (!row) { return; }
      var avail = row.querySelector(".avail");
      if (avail) {
        avail.classList.toggle("ok", d.available);
        avail.classList.toggle("bad", !d.available);
        text(avail, d.available ? "available 可用" : "unavailable 不可用" + (d.reason ? " — " + d.reason : ""));
      }
      text(row.querySelector(".last"), d.last_event_at || "—");
      text(row.querySelector(".rate"), d.per_min === null ? "…" : String(d.per_min));
      text(row.querySelector(".count"), String(d.events));
      text(row.querySelector(".scantest"), scanText(d.scan_test));
    });
    var broker = document.getElementById("broker");
    if (broker) {
      broker.classList.toggle("ok", doc.equipment.connected);
      broker.classList.toggle("bad", !doc.equipment.connected);
      text(broker, doc.equipment.connected ? "connected 已连接" : "NOT connected 未连接");
    }
  }

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) { if (doc) { apply(doc); } })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
}());
