// The sandbox SMS provider beside the phone: what xinyi texted (bot/sandbox/sms.py), newest first,
// polled, each under the persona whose phone it went to. Data is only ever set as text.
(function () {
  "use strict";
  var shared = window.XinyiConsole, el = shared.el;
  var owners = {};  // masked number -> the persona's name
  shared.config.personas.forEach(function (p) {
    if (p.phone) owners[p.phone.slice(0, 3) + "****" + p.phone.slice(-4)] = p.name;
  });

  function item(sms) {
    var row = el("li", "sms-message");
    row.dataset.template = sms.template;
    row.appendChild(el("strong", "", (owners[sms.to] ? owners[sms.to] + " " : "") + sms.to));
    row.appendChild(el("time", "", sms.at));
    row.appendChild(el("span", "sms-text", sms.text));
    return row;
  }

  shared.pollList(document.getElementById("sms-messages"), "/sandbox/sms/received",
                  function (answer) { return answer.messages; }, function (m) { return m.at + m.to + m.template; }, item);
})();
