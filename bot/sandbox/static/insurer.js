// The sandbox insurer beside the phone: the programme events it received and verified
// (bot/sandbox/insurer.py), newest first, polled. Data is only ever set as text.
(function () {
  "use strict";
  var shared = window.XinyiConsole, el = shared.el;

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

  shared.pollList(document.getElementById("insurer-events"), "/sandbox/insurer/received",
                  function (answer) { return answer.events; }, function (e) { return e.event_id; }, item);
})();
