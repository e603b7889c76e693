// The chat simulator: a WeChat chat on a phone. What the persona does goes to
// /sandbox/chat/send, which pushes it to /wechat as WeChat would; the chat of every persona
// comes from /sandbox/chat/history, polled. Data is only ever set as text.
(function () {
  "use strict";
  var shared = window.XinyiConsole;
  var config = shared.config, format = shared.format, el = shared.el;
  var T = config.texts;
  var POLL_MS = 1000;
  var TIME_GAP_MS = 5 * 60 * 1000;  // WeChat shows the time again after a pause
  var CHINA_TIME = new Intl.DateTimeFormat("en-US", {timeZone: "Asia/Shanghai", hourCycle: "h23", month: "numeric",
                                                      day: "numeric", hour: "2-digit", minute: "2-digit"});
  var URL_PATTERN = /https?:\/\/[^\s，。；、“”]+/g;

  var chat = document.getElementById("chat");
  var menuBar = document.getElementById("menu-bar");
  var menuPopup = document.getElementById("menu-popup");
  var inputBar = document.getElementById("input-bar");
  var input = document.getElementById("text");
  var sendButton = document.getElementById("send");
  var voiceToggle = document.getElementById("voice-toggle");

  var byKey = {};
  config.personas.forEach(function (p) { byKey[p.key] = p; });
  var keyOf = {};
  config.personas.forEach(function (p) { keyOf[p.openid] = p.key; });
  var current = byKey[location.hash.slice(1)] ? location.hash.slice(1) : config.personas[0].key;
  var transcripts = {};  // openid -> entries
  var unread = {};
  var lastSeq = 0;
  var loaded = false;
  var voice = false;
  var waiting = 0;

  // --- links open in a phone-sized window, as WeChat opens H5 pages in its own browser ------

  function openPage(href) {
    var page = window.open(href, "xinyi-h5", "popup,width=420,height=860");
    if (!page) location.href = href;
  }

  function link(href, text) {
    var a = el("a", "", text);
    a.href = href;
    a.addEventListener("click", function (event) { event.preventDefault(); openPage(href); });
    return a;
  }

  function linkified(text) {
    var box = el("div", "wx-text");
    var at = 0;
    text.replace(URL_PATTERN, function (found, offset) {
      box.appendChild(document.createTextNode(text.slice(at, offset)));
      box.appendChild(link(found, found));
      at = offset + found.length;
      return found;
    });
    box.appendChild(document.createTextNode(text.slice(at)));
    return box;
  }

  // --- drawing the chat ------------------------------------------------------------------

  function avatar(side) {
    var persona = byKey[current];
    var face = el("span", "wx-avatar " + (side === "user" ? "persona-" + persona.key : "account"),
                  side === "user" ? persona.name.slice(-1) : T.account.slice(0, 1));
    face.setAttribute("aria-hidden", "true");
    return face;
  }

  function bubbleRow(entry, content) {
    var row = el("div", "wx-row " + entry.side);
    row.dataset.seq = entry.seq;
    row.appendChild(avatar(entry.side));
    row.appendChild(content);
    return row;
  }

  function card(entry) {
    var c = entry.card;
    var box = el("article", "wx-card");
    box.appendChild(el("h4", "", c.title));
    box.appendChild(el("p", "wx-card-time", clock(entry.at, true)));
    if (c.first) box.appendChild(el("p", "wx-card-first", c.first));
    var list = el("dl");
    c.fields.forEach(function (field) {
      var line = el("div");
      line.appendChild(el("dt", "", field[0] + "："));
      line.appendChild(el("dd", "", field[1]));
      list.appendChild(line);
    });
    box.appendChild(list);
    if (c.remark) box.appendChild(el("p", "wx-card-remark", c.remark));
    if (entry.url) {
      var more = link(entry.url, T.details);
      more.className = "wx-card-link";
      box.appendChild(more);
    }
    return box;
  }

  function drawn(entry) {
    if (entry.side === "system") {
      var note = el("p", "wx-note" + (entry.error ? " error" : ""), entry.text);
      note.dataset.seq = entry.seq;
      return note;
    }
    if (entry.kind === "template") return bubbleRow(entry, card(entry));
    if (entry.kind === "image") {
      var picture = el("div", "wx-bubble image");
      var img = document.createElement("img");
      img.src = entry.image_url;
      img.alt = "QR";
      img.width = 200;
      picture.appendChild(img);
      return bubbleRow(entry, picture);
    }
    if (entry.kind === "voice") {
      var said = el("div", "wx-bubble voice");
      said.appendChild(el("span", "wx-voice-bar", T.voice + " )))"));
      var recognised = el("p", "wx-recognised");
      recognised.appendChild(el("span", "wx-recognised-label", T.to_text + "："));
      recognised.appendChild(document.createTextNode(entry.text));
      said.appendChild(recognised);
      return bubbleRow(entry, said);
    }
    var bubble = el("div", "wx-bubble");
    bubble.appendChild(entry.side === "account" ? linkified(entry.text) : el("div", "wx-text", entry.text));
    return bubbleRow(entry, bubble);
  }

  function clock(iso, withDay) {
    // China time, as the bot says it, whatever the clock of the browser: a payer abroad sees
    // the same 17:00 in the chat as in the bot's own words.
    var parts = {};
    CHINA_TIME.formatToParts(new Date(iso)).forEach(function (part) { parts[part.type] = part.value; });
    var time = parts.hour.replace(/^24$/, "00") + ":" + parts.minute;
    return withDay ? Number(parts.month) + "/" + Number(parts.day) + " " + time : time;
  }

  function redraw() {
    var persona = byKey[current];
    document.getElementById("owner").textContent = format(T.phone_of, {name: persona.name});
    chat.textContent = "";
    var entries = transcripts[persona.openid] || [];
    if (!entries.length) chat.appendChild(profile());
    var previous = 0;
    entries.forEach(function (entry) {
      var at = new Date(entry.at).getTime();
      if (at - previous > TIME_GAP_MS) chat.appendChild(el("p", "wx-time", clock(entry.at, false)));
      previous = at;
      chat.appendChild(drawn(entry));
    });
    if (waiting) chat.appendChild(el("p", "wx-typing", T.typing));
    chat.scrollTop = chat.scrollHeight;
    drawPersonas();
  }

  function profile() {
    // A chat with nothing in it yet: the account's card, as WeChat shows before following.
    var box = el("div", "wx-profile");
    box.appendChild(el("span", "wx-avatar account big", T.account.slice(0, 1)));
    box.appendChild(el("h4", "", T.account));
    var follow = el("button", "wx-follow", document.getElementById("follow").textContent);
    follow.type = "button";
    follow.addEventListener("click", function () { act({kind: "follow"}); });
    box.appendChild(follow);
    return box;
  }

  function receive(entries) {
    var shown = false;
    entries.forEach(function (entry) {
      if (entry.seq <= lastSeq) return;
      lastSeq = entry.seq;
      (transcripts[entry.openid] = transcripts[entry.openid] || []).push(entry);
      if (entry.openid === byKey[current].openid) {
        shown = true;
      } else if (loaded && keyOf[entry.openid]) {
        unread[entry.openid] = (unread[entry.openid] || 0) + 1;
      }
    });
    if (shown || !loaded) redraw(); else drawPersonas();
    loaded = true;
  }

  // --- talking to the console ------------------------------------------------------------

  function poll() {
    shared.fetchJson("/sandbox/chat/history?after=" + lastSeq)
      .then(function (answer) { receive(answer.entries); }, function () {})
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  function act(what) {
    what.persona = current;
    waiting += 1;
    redraw();
    return shared.postJson("/sandbox/chat/send", what).then(function (answer) {
      waiting -= 1;
      receive(answer.entries);
      redraw();
    }, function (error) {
      waiting -= 1;
      redraw();
      chat.appendChild(el("p", "wx-note error", format(T.failed, {error: error.message})));
      chat.scrollTop = chat.scrollHeight;
    });
  }

  // --- the bottom bar: the account's custom menu, or the keyboard -------------------------

  function icon(button, label, glyph) {
    button.textContent = glyph;
    button.setAttribute("aria-label", label);
    button.title = label;
  }

  function showMenu(on) {
    menuBar.hidden = !on;
    inputBar.hidden = on;
    menuPopup.hidden = true;
    if (!on) input.focus();
  }

  function buildMenu() {
    var toKeyboard = el("button", "wx-icon");
    toKeyboard.type = "button";
    icon(toKeyboard, T.to_keyboard, "⌨");
    toKeyboard.addEventListener("click", function () { showMenu(false); });
    menuBar.appendChild(toKeyboard);
    config.menu.button.forEach(function (top, index) {
      var button = el("button", "wx-menu-button", top.name);
      button.type = "button";
      button.setAttribute("aria-haspopup", "true");
      button.addEventListener("click", function () { openSubMenu(top, index); });
      menuBar.appendChild(button);
    });
  }

  function openSubMenu(top, index) {
    if (!menuPopup.hidden && menuPopup.dataset.index === String(index)) {
      menuPopup.hidden = true;
      return;
    }
    menuPopup.textContent = "";
    menuPopup.dataset.index = index;
    menuPopup.style.left = "calc(44px + (100% - 44px) * " + index + " / " + config.menu.button.length + ")";
    menuPopup.style.width = "calc((100% - 44px) / " + config.menu.button.length + ")";
    top.sub_button.forEach(function (sub) {
      var item = el("button", "wx-menu-item", sub.name);
      item.type = "button";
      item.setAttribute("role", "menuitem");
      item.addEventListener("click", function () {
        menuPopup.hidden = true;
        act({kind: "click", key: sub.key, name: top.name + " › " + sub.name});
      });
      menuPopup.appendChild(item);
    });
    menuPopup.hidden = false;
  }

  function setVoice(on) {
    voice = on;
    icon(voiceToggle, on ? T.to_text_input : T.to_voice, on ? T.keyboard : T.voice);
    input.placeholder = on ? T.voice_placeholder : T.text_placeholder;
    sendButton.textContent = on ? T.say : T.send;
    inputBar.classList.toggle("voice", on);
  }

  inputBar.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    act({kind: voice ? "voice" : "text", text: text});
  });
  icon(document.getElementById("to-menu"), T.to_menu, "☰");
  document.getElementById("to-menu").addEventListener("click", function () { showMenu(true); });
  voiceToggle.addEventListener("click", function () { setVoice(!voice); input.focus(); });

  // --- the console beside the phone: personas, their papers, one-click actions ------------

  function drawPersonas() {
    var box = document.getElementById("personas");
    box.textContent = "";
    config.personas.forEach(function (p) {
      var button = el("button", "persona persona-" + p.key);
      button.type = "button";
      button.setAttribute("aria-pressed", p.key === current ? "true" : "false");
      var face = el("span", "wx-avatar persona-" + p.key, p.name.slice(-1));
      face.setAttribute("aria-hidden", "true");
      button.appendChild(face);
      var words = el("span", "persona-words");
      words.appendChild(el("strong", "", p.name));
      words.appendChild(el("span", "persona-role", p.role));
      button.appendChild(words);
      if (unread[p.openid]) button.appendChild(el("span", "badge", format(T.unread, {count: unread[p.openid]})));
      button.addEventListener("click", function () { switchTo(p.key); });
      box.appendChild(button);
    });
    drawPapers();
  }

  function drawPapers() {
    var persona = byKey[current];
    var box = document.getElementById("persona-data");
    box.textContent = "";
    var rows = [];
    if (persona.id_number) rows.push([T.name, persona.name], [T.id_number, persona.id_number], [T.phone, persona.phone]);
    if (persona.family) {
      rows.push([T.relation, persona.family[0]], [T.family_name, persona.family[1]],
                [T.family_id_number, persona.family[2]]);
    }
    if (!rows.length) box.appendChild(el("p", "hint", T.staff_tip));
    var list = el("dl");
    rows.forEach(function (row) {
      var line = el("div");
      line.appendChild(el("dt", "", row[0]));
      line.appendChild(el("dd", "", row[1]));
      var fill = el("button", "fill", T.fill);
      fill.type = "button";
      fill.setAttribute("aria-label", T.fill + " " + row[0]);
      fill.addEventListener("click", function () {
        showMenu(false);
        input.value = row[1];
        input.focus();
      });
      line.appendChild(fill);
      list.appendChild(line);
    });
    box.appendChild(list);
    document.getElementById("scan").hidden = persona.key === "staff";
  }

  function switchTo(key) {
    current = key;
    delete unread[byKey[key].openid];
    history.replaceState(null, "", "#" + key);
    menuPopup.hidden = true;
    redraw();
  }

  document.getElementById("follow").addEventListener("click", function () { act({kind: "follow"}); });
  document.getElementById("scan").addEventListener("click", function () { act({kind: "scan"}); });

  buildMenu();
  setVoice(false);
  showMenu(true);
  redraw();
  poll();
})();
