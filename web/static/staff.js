/* storegw staff pages and KDS: live refresh (SSE, else polling), ticket timers, forms without reloads. */
(function () {
  "use strict";
  var page = document.getElementById("staffpage");
  if (!page || !window.fetch) { return; }
  var channel = page.getAttribute("data-channel");
  var liveUrl = page.getAttribute("data-live");
  var version = page.getAttribute("data-version") || "0";
  var warn = parseInt(page.getAttribute("data-warn") || "600", 10);
  var late = parseInt(page.getAttribute("data-late") || "1200", 10);

  function refresh() {
    if (!liveUrl) { window.location.reload(); return; }
    fetch(liveUrl, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (r.status === 200) { return r.text(); }
      if (r.redirected || r.status === 401 || r.status === 403) { window.location.reload(); }
    }).then(function (html) {
      if (html) { document.getElementById("kds-live").innerHTML = html; tick(); }
    }).catch(function () {});
  }

  function fmt(s) { var m = Math.floor(s / 60); s = s % 60; return m + ":" + (s < 10 ? "0" : "") + s; }
  function tick() {
    var now = Date.now();
    var timers = document.querySelectorAll("[data-since]");
    for (var i = 0; i < timers.length; i++) {
      var age = Math.max(0, Math.floor((now - parseInt(timers[i].getAttribute("data-since"), 10)) / 1000));
      timers[i].textContent = fmt(age);
      var card = timers[i].closest ? timers[i].closest(".ticket") : null;
      if (card) {
        card.classList.remove("ok", "warn", "late");
        card.classList.add(age >= late ? "late" : age >= warn ? "warn" : "ok");
      }
    }
  }
  setInterval(tick, 1000);
  tick();

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains("js")) { return; }
    e.preventDefault();
    var data = new FormData(form);
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"X-Requested-With": "js", "Accept": "application/json"}})
      .then(function (r) { return r.json().catch(function () { return {ok: false, error: "HTTP " + r.status}; }); })
      .then(function (body) {
        if (!body.ok && body.error) { window.alert(body.error); }
        var code = form.querySelector("input[name=code]");
        if (code) { code.value = ""; code.focus(); }
        refresh();
      });
  });

  var timer = null;
  function poll() { if (!timer) { timer = setInterval(refresh, 5000); } }
  if (window.EventSource) {
    var es = new EventSource("/staff/events?ch=" + encodeURIComponent(channel) + "&v=" + encodeURIComponent(version));
    es.onmessage = function (ev) { if (ev.data !== version) { version = ev.data; refresh(); } };
    es.addEventListener("poll", function () { es.close(); poll(); });
    es.onerror = function () { if (es.readyState === 2) { poll(); } };
  } else { poll(); }
})();
