// The sandbox insurer beside the phone: the programme events it received and verified
// (bot/sandbox/insurer.py), newest first, polled. Data is only ever set as text.
(function () {
  "use strict";
  var shared = window.XinyiConsole, el = shared.el;
  var POLL_MS = 2000;
  var list = document.getElementById("insurer-events");
  var shown = "";

  function item(event) {
    var row = el("li", "insurer-event");
    row.dataset.event = event.event;
    row.appendChild(el("strong", "", event.event));
    row.appendChild(el("time", "", event.occurred_at));
    var data = event.data || {};
    row.appendChild(el("span", "insurer-data", Object.keys(data).map(function (key) {
      var value = data[key];
      return key + "=" + (typeof value === "object" && value !== null ? JSON.stringify(value) : value);
    }).join(" · ")));
    return row;
  }

  function draw(events) {
    var fingerprint = events.map(function (e) { return e.event_id; }).join();
    if (fingerprint === shown) return;
    shown = fingerprint;
    list.textContent = "";
    if (!events.length) list.appendChild(el("li", "insurer-empty", list.dataset.empty));
    events.forEach(function (event) { list.appendChild(item(event)); });
  }

  function poll() {
    shared.fetchJson("/sandbox/insurer/received").then(function (answer) { draw(answer.events); }, function () {})
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  draw([]);
  poll();
})();
