/* storegw diner page enhancement: forms without reloads, live updates (SSE, else polling),
   instant allergen filter. Without this script every form still works (POST + redirect). */
(function () {
  "use strict";
  var page = document.getElementById("page");
  if (!page || !window.fetch || !window.FormData) { return; }
  var token = page.getAttribute("data-token");
  var d = page.getAttribute("data-d");
  var lang = page.getAttribute("data-lang");
  var base = page.getAttribute("data-base") || "/t/" + encodeURIComponent(token);
  var qs = "?d=" + encodeURIComponent(d) + "&lang=" + encodeURIComponent(lang);
  var version = page.getAttribute("data-version") || "0";
  var etag = null;
  var busy = false;

  function live() { return document.getElementById("live"); }

  function note(text, kind) {
    var old = document.getElementById("js-msg");
    if (old) { old.parentNode.removeChild(old); }
    if (!text) { return; }
    var p = document.createElement("p");
    p.id = "js-msg";
    p.className = "msg " + (kind || "ok");
    p.setAttribute("role", kind === "error" ? "alert" : "status");
    p.textContent = text;
    page.insertBefore(p, page.firstChild);
  }

  function applySoldOut() {
    var inner = document.getElementById("live-inner");
    if (!inner) { return; }
    var out = (inner.getAttribute("data-sold-out") || "").split(" ");
    var items = document.querySelectorAll("article.item");
    for (var i = 0; i < items.length; i++) {
      var id = items[i].getAttribute("data-item");
      var isOut = out.indexOf(id) >= 0;
      var btn = items[i].querySelector("button.addbtn");
      if (isOut && btn && !btn.disabled) {
        btn.disabled = true;
        btn.setAttribute("data-label", btn.textContent);
        btn.textContent = lang === "zh" ? "已估清" : "Sold out";
        items[i].className += " out";
      } else if (!isOut && btn && btn.disabled && btn.getAttribute("data-label")) {
        btn.disabled = false;  /* back in stock (a void, a delivery): orderable again without a reload */
        btn.textContent = btn.getAttribute("data-label");
        btn.removeAttribute("data-label");
        items[i].className = items[i].className.replace(/ out\b/g, "");
      }
    }
  }

  function refresh() {
    var headers = {"X-Requested-With": "js"};
    if (etag) { headers["If-None-Match"] = etag; }
    return fetch(base + "/live" + qs, {headers: headers, cache: "no-store", credentials: "omit"}).then(function (r) {
      if (r.status === 304) { return; }
      if (!r.ok) { return; }
      etag = r.headers.get("ETag");
      version = r.headers.get("X-View-Version") || version;
      return r.text().then(function (html) {
        var el = live();
        var active = document.activeElement;
        if (active && el.contains(active) && active.tagName === "INPUT" && active.type === "text") { return; }
        el.innerHTML = html;
        applySoldOut();
      });
    }).catch(function () {});
  }

  function send(form, attempt) {
    var data = new FormData(form);
    var submitter = form.__submitter;
    if (submitter && submitter.name) { data.append(submitter.name, submitter.value); }
    return fetch(form.action, {method: "POST", body: data, credentials: "omit",
                               headers: {"Accept": "application/json", "X-Requested-With": "js"}})
      .then(function (r) {
        return r.json().then(function (body) { return {status: r.status, body: body}; });
      })
      .then(function (res) {
        if (res.body.ok) {
          if (res.body.round) {
            note((lang === "zh" ? "已送厨房：第" + res.body.round + "轮。" : "Sent to the kitchen: round " + res.body.round + "."));
          } else if (form.className.indexOf("add") >= 0) {
            note(lang === "zh" ? "已加入购物车。" : "Added to the table cart.");
          }
        } else {
          note(res.body.error || "Error", "error");
        }
        return refresh();
      }, function () {
        /* network error: retry the same request (same idempotency key) a few times */
        if (attempt < 3) {
          return new Promise(function (ok) { setTimeout(ok, 800 * (attempt + 1)); }).then(function () {
            return send(form, attempt + 1);
          });
        }
        note(lang === "zh" ? "网络错误，请重试。" : "Network error, please try again.", "error");
      });
  }

  document.addEventListener("click", function (e) {
    var b = e.target;
    if (b && b.tagName === "BUTTON" && b.form) { b.form.__submitter = b; }
  }, true);

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains("js")) { return; }
    e.preventDefault();
    if (form.__busy) { return; } /* double tap: the server would dedupe it anyway */
    form.__busy = true;
    var buttons = form.querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    send(form, 0).then(function () {
      form.__busy = false;
      for (var j = 0; j < buttons.length; j++) { buttons[j].disabled = false; }
      applySoldOut();
    });
  });

  /* instant allergen filter */
  var filter = document.querySelector("form.filter");
  if (filter) {
    filter.addEventListener("change", function () {
      var hide = [];
      var boxes = filter.querySelectorAll("input[name=hide]");
      for (var i = 0; i < boxes.length; i++) { if (boxes[i].checked) { hide.push(boxes[i].value); } }
      var items = document.querySelectorAll("article.item");
      for (var k = 0; k < items.length; k++) {
        var tags = (items[k].getAttribute("data-allergens") || "").split(" ");
        var hidden = false;
        for (var h = 0; h < hide.length; h++) { if (tags.indexOf(hide[h]) >= 0) { hidden = true; } }
        items[k].hidden = hidden;
      }
    });
  }

  /* live updates: SSE while the server has a free stream slot, otherwise polling */
  var pollTimer = null;
  function poll() {
    if (pollTimer) { return; }
    pollTimer = setInterval(refresh, 4000);
  }
  if (window.EventSource) {
    var es = new EventSource(base + "/events?v=" + encodeURIComponent(version) + "&d=" + encodeURIComponent(d));
    es.onmessage = function (ev) {
      if (ev.data !== version) { version = ev.data; refresh(); }
    };
    es.addEventListener("poll", function () { es.close(); poll(); });
    es.onerror = function () { if (es.readyState === 2) { poll(); } };
  } else {
    poll();
  }
  applySoldOut();
})();
