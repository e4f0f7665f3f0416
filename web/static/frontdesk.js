/* storegw front desk: show documents read at the desk without a reload (the page works without it). */
(function () {
  "use strict";
  var box = document.getElementById("scans");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-url");
  var base = box.getAttribute("data-link");
  var useText = box.getAttribute("data-use");
  var known = box.getAttribute("data-ids") || "";
  function render(scans) {
    var ids = scans.map(function (s) { return s.id; }).join(",");
    if (ids === known) { return; }
    known = ids;
    var list = document.createElement("ul");
    scans.forEach(function (s) {
      var li = document.createElement("li");
      li.textContent = s.doc + " · " + s.name + " · " + s.number + " ";
      var a = document.createElement("a");
      a.href = base + (base.indexOf("?") < 0 ? "?" : "&") + "scan=" + encodeURIComponent(s.id);
      a.textContent = useText;
      a.setAttribute("aria-label", useText + " " + s.name);
      li.appendChild(a);
      list.appendChild(li);
    });
    var old = box.querySelector("ul");
    if (old) { box.replaceChild(list, old); } else { box.appendChild(list); }
    var none = box.querySelector(".none");
    if (none) { none.hidden = scans.length > 0; }
  }
  function poll() {
    fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      return r.status === 200 ? r.json() : null;
    }).then(function (doc) { if (doc) { render(doc.scans); } }).catch(function () {});
  }
  setInterval(poll, 1500);
})();
