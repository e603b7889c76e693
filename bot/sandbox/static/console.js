// What the sandbox console's pages share: the page's config (its language, its texts),
// building nodes (data only ever set as text), filling in translated texts, and asking the
// console's JSON endpoints in the page's language. Loaded before the page's own script.
window.XinyiConsole = (function () {
  "use strict";
  var config = JSON.parse(document.getElementById("config").textContent);

  function format(text, params) {
    return text.replace(/\{(\w+)\}/g, function (_, name) { return params[name] === undefined ? "" : params[name]; });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function url(path) {
    return path + (path.indexOf("?") < 0 ? "?" : "&") + "lang=" + encodeURIComponent(config.locale);
  }

  // The answer as JSON; a refusal rejects with the console's error message.
  function fetchJson(path, options) {
    return fetch(url(path), options).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) throw new Error(answer.error || response.status);
        return answer;
      });
    });
  }

  function postJson(path, body) {
    return fetchJson(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  }

  // A list under the console that a sandbox party fills (the insurer's events, the SMS sent): `path`
  // polled every 2 s, `pick` takes the entries out of its answer, newest first; redrawn when their
  // `key`s change, each entry made by `item`; the list's data-empty text while there are none.
  function pollList(list, path, pick, key, item) {
    var shown = null;
    function draw(entries) {
      var fingerprint = entries.map(key).join();
      if (fingerprint === shown) return;
      shown = fingerprint;
      list.textContent = "";
      if (!entries.length) list.appendChild(el("li", list.className + "-empty", list.dataset.empty));
      entries.forEach(function (entry) { list.appendChild(item(entry)); });
    }
    function poll() {
      fetchJson(path).then(function (answer) { draw(pick(answer)); }, function () {})
        .then(function () { setTimeout(poll, 2000); });
    }
    draw([]);
    poll();
  }

  return {config: config, format: format, el: el, fetchJson: fetchJson, postJson: postJson, pollList: pollList};
})();
