// The hospital panel: the HIS of a hospital in the programme. Every change goes through
// /sandbox/hospital/call, which signs it with the hospital's API secret and sends it to
// /api/v1 over HTTP; what the HIS knows of a patient comes from /sandbox/hospital/patient.
// Amounts are typed in yuan and sent in fen, converted as text, never through floats.
(function () {
  "use strict";
  var shared = window.XinyiConsole;
  var config = shared.config, format = shared.format, el = shared.el;
  var T = config.texts;
  var NUMBER = /^[A-Za-z0-9-]{1,32}$/;
  var YUAN = /^(\d{1,7})(?:\.(\d{1,2}))?$/;

  var hospitalSelect = document.getElementById("hospital");
  var idInput = document.getElementById("id-number");
  var patientBox = document.getElementById("patient");
  var visitsBox = document.getElementById("visits");
  var newVisit = document.getElementById("new-visit");
  var logBox = document.getElementById("log");
  var patient = null;  // {id_number, name, visits}

  function button(text, onClick, className) {
    var b = el("button", className || "", text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function yuan(fen) {
    var sign = fen < 0 ? "-" : "";
    fen = Math.abs(fen);
    return sign + config.yuan_sign + Math.floor(fen / 100).toLocaleString("en-US") + "." + String(fen % 100).padStart(2, "0");
  }

  function toFen(text) {
    var m = YUAN.exec(String(text).trim());
    if (!m) return null;
    return Number(m[1]) * 100 + Number((m[2] || "0").padEnd(2, "0"));
  }

  function fenText(fen) {
    return Math.floor(fen / 100) + "." + String(fen % 100).padStart(2, "0");
  }

  function hospital() {
    return config.hospitals.find(function (h) { return h.code === hospitalSelect.value; }) || config.hospitals[0];
  }

  // --- the signed API, and the log of what went over the wire ------------------------------

  function call(method, path, body) {
    return shared.postJson("/sandbox/hospital/call", {hospital: hospital().code, method: method, path: path, body: body})
      .then(function (answer) {
        log(answer);
        return answer;
      }, function (error) {
        var entry = el("div", "log-entry");
        entry.appendChild(el("h4", "refused", format(T.failed, {error: error.message})));
        logBox.prepend(entry);
        throw error;
      });
  }


  function log(exchange) {
    var entry = el("div", "log-entry");
    var head = el("h4", "status-" + String(exchange.status).charAt(0),
                  exchange.request.method + " " + new URL(exchange.request.url).pathname + " → " +
                  format(T.answer, {status: exchange.status}));
    entry.appendChild(head);
    entry.appendChild(el("p", "", T.request));
    var sent = Object.keys(exchange.request.headers).map(function (name) {
      return name + ": " + exchange.request.headers[name];
    }).join("\n");
    if (exchange.request.body !== null) sent += "\n\n" + JSON.stringify(exchange.request.body, null, 2);
    entry.appendChild(el("pre", "", sent));
    entry.appendChild(el("pre", "answer", JSON.stringify(exchange.answer, null, 2)));
    logBox.prepend(entry);
  }

  // A refusal of the API (402 over the line, 409, 400 ...) or of the console, written beside
  // the form that asked: the log below is far down the page.
  function alertBox() {
    var box = el("p", "refused form-alert");
    box.setAttribute("role", "alert");
    box.hidden = true;
    return box;
  }

  function refusalText(exchange) {
    var answer = exchange.answer || {};
    var message = typeof answer === "object" ? (answer.message || answer.error || "") : String(answer);
    if (exchange.status === 402 && typeof answer.available_fen === "number") {
      return format(T.over_limit, {available: yuan(answer.available_fen), message: message});
    }
    return format(T.refused_http, {status: exchange.status, error: answer.error || "", message: message});
  }

  function sayRefused(box, text) {
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  // An input whose own check failed is valid again as soon as it is edited: a custom validity
  // left in place would block every later submit of its form.
  function checkedInput(input) {
    input.addEventListener("input", function () { input.setCustomValidity(""); });
    return input;
  }

  // --- the patient ---------------------------------------------------------------------------

  function find(idNumber) {
    idInput.value = idNumber;
    return call("POST", "/api/v1/eligibility", {id_number: idNumber}).then(function (exchange) {
      return load(idNumber).then(function () { showEligibility(exchange); });
    }, function () {});
  }

  function load(idNumber) {
    var query = "?hospital=" + encodeURIComponent(hospital().code) + "&id_number=" + encodeURIComponent(idNumber);
    return shared.fetchJson("/sandbox/hospital/patient" + query).then(function (answer) {
      patient = {id_number: idNumber, name: answer.name, payer: answer.payer, visits: answer.visits};
      drawVisits();
    });
  }

  function reload() {
    return patient ? load(patient.id_number) : Promise.resolve();
  }

  function showEligibility(exchange) {
    patientBox.textContent = "";
    var answer = exchange.answer;
    patientBox.appendChild(el("p", "", patient.name ? format(T.patient, {name: patient.name}) : T.no_resident));
    if (exchange.status !== 200) {
      patientBox.appendChild(el("p", "refused", answer.message || answer.error));
    } else {
      if (answer.line === "family") {
        // Bound by a relative (家人): served on the payer's line, whatever their own status.
        patientBox.appendChild(el("p", "", format(T.served_by_family, {payer: patient.payer || ""})));
      } else {
        patientBox.appendChild(el("p", "", format(T.member_status, {status: config.member_status[answer.status] || answer.status})));
      }
      if (answer.line !== null) {
        patientBox.appendChild(el("p", "ok", format(T.available, {available: yuan(answer.available_fen)})));
      } else if (answer.status !== "none" && answer.status !== "prospect" && !answer.eligible) {
        // In the programme, but not served on credit now: suspended, revoked, blacklisted, cancelled ...
        var why = config.member_status[answer.reason] || answer.reason;
        patientBox.appendChild(el("p", "refused", format(T.not_served, {reason: why})));
      } else if (answer.eligible) {
        patientBox.appendChild(el("p", "ok", format(T.can_enrol, {limit: yuan(answer.limit_fen)})));
      } else {
        patientBox.appendChild(el("p", "refused", format(T.cannot_enrol, {reason: answer.reason})));
      }
    }
    newVisit.hidden = false;
    document.getElementById("visit-no").value = "V" + Date.now().toString(36).toUpperCase();
  }

  // --- visits ----------------------------------------------------------------------------------

  function drawVisits() {
    visitsBox.textContent = "";
    if (!patient.visits.length) {
      var none = el("section", "card");
      none.appendChild(el("p", "", T.no_visits));
      visitsBox.appendChild(none);
    }
    patient.visits.forEach(function (visit) { visitsBox.appendChild(drawVisit(visit)); });
  }

  function drawVisit(visit) {
    var box = el("section", "card visit");
    box.dataset.visitNo = visit.visit_no;
    var title = el("h2", "", visit.visit_no + " · " + visit.department + " · " + (config.kinds[visit.kind] || visit.kind) +
                   " · " + (config.visit_status[visit.status] || visit.status) + " ");
    title.appendChild(visit.on_credit ? el("span", "credit-mark", T.credit_mark)
                                      : el("span", "off-credit", format(T.not_on_credit, {reason: visit.reason})));
    box.appendChild(title);
    var open = visit.status === "open";
    if (open) {
      // The kiosk check-in of a booked visit: the same visit again, which the API answers as the first time.
      var checkInAlert = alertBox();
      box.appendChild(button(T.check_in, function () {
        post("/api/v1/visits", {visit_no: visit.visit_no, id_number: patient.id_number, department: visit.department,
                                kind: visit.kind, exclusion: visit.exclusion}, checkInAlert);
      }, "secondary"));
      box.appendChild(checkInAlert);
    }
    box.appendChild(chargeTable(visit, open));
    if (open) {
      box.appendChild(chargeForm(visit));
      if (visit.on_credit) box.appendChild(checkoutForm(visit));
    }
    if (visit.bill) box.appendChild(billLine(visit.bill));
    return box;
  }

  function chargeTable(visit, open) {
    var wrap = el("div", "charges-wrap");
    var table = el("table", "charges");
    var tableAlert = alertBox();
    var head = el("tr");
    [T.charge_no, T.category, T.item, T.amount, T.status, ""].forEach(function (name, i) {
      head.appendChild(el("th", i === 3 ? "money" : "", name));
    });
    table.appendChild(head);
    visit.charges.forEach(function (charge) {
      var row = el("tr");
      row.appendChild(el("td", "", charge.charge_no));
      row.appendChild(el("td", "", config.categories[charge.category] || charge.category));
      row.appendChild(el("td", "", charge.name));
      row.appendChild(el("td", "money", yuan(charge.amount_fen)));
      row.appendChild(el("td", "", config.charge_status[charge.status] || charge.status));
      var cell = el("td");
      if (charge.status === "held" || charge.status === "posted" || (open && charge.status === "prepaid")) {
        var cancel = button(T.cancel, function () {
          // One click must not undo an order: say which, and ask.
          if (!window.confirm(format(T.confirm_cancel, {item: charge.name, amount: yuan(charge.amount_fen)}))) return;
          post(chargePath(visit, charge.charge_no) + "/cancel", {}, tableAlert);
        }, "secondary");
        cancel.setAttribute("aria-label", T.cancel + " " + charge.name);
        cell.appendChild(cancel);
      }
      row.appendChild(cell);
      table.appendChild(row);
    });
    wrap.appendChild(table);
    wrap.appendChild(tableAlert);
    return wrap;
  }

  function visitPath(visit) {
    return "/api/v1/visits/" + encodeURIComponent(visit.visit_no);
  }

  function chargePath(visit, chargeNo) {
    return visitPath(visit) + "/charges/" + encodeURIComponent(chargeNo);
  }

  var triedChargeNos = {};  // sent and refused: the same number with another amount would be a conflict

  function nextChargeNo(visit) {
    var n = visit.charges.length + 1;
    var taken = visit.charges.map(function (c) { return c.charge_no; });
    while (taken.indexOf(visit.visit_no + "-" + n) >= 0 || triedChargeNos[visit.visit_no + "-" + n]) n += 1;
    triedChargeNos[visit.visit_no + "-" + n] = true;
    return visit.visit_no + "-" + n;
  }

  function chargeForm(visit) {
    var form = el("form", "charge-form");
    form.autocomplete = "off";
    var category = el("select");
    Object.keys(config.categories).forEach(function (code) {
      var option = el("option", "", config.categories[code]);
      option.value = code;
      category.appendChild(option);
    });
    category.value = "exam";
    var name = el("input");
    name.maxLength = 200;
    var amount = checkedInput(el("input"));
    amount.inputMode = "decimal";
    amount.maxLength = 10;
    [[T.category, category], [T.item, name], [T.amount_yuan, amount]].forEach(function (pair) {
      var label = el("label", "", pair[0]);
      label.appendChild(pair[1]);
      form.appendChild(label);
    });
    var submit = el("button", "", T.add_charge);
    submit.type = "submit";
    form.appendChild(submit);
    var refused = alertBox();
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var fen = toFen(amount.value);
      if (fen === null || fen === 0) {
        amount.setCustomValidity(T.bad_amount);
        amount.reportValidity();
        return;
      }
      amount.setCustomValidity("");
      sayRefused(refused, "");
      post(visitPath(visit) + "/charges", {charge_no: nextChargeNo(visit), category: category.value,
                                            name: name.value.trim(), amount_fen: fen, prepaid: false}, refused);
    });
    var wrap = el("div");
    wrap.appendChild(el("h3", "", T.add_charge));
    wrap.appendChild(form);
    wrap.appendChild(refused);
    var orders = el("p", "orders");
    orders.appendChild(el("span", "", T.common_orders + "："));
    config.orders.forEach(function (order) {
      orders.appendChild(button(order.name + " " + config.yuan_sign + order.yuan, function () {
        category.value = order.category;
        name.value = order.name;
        amount.value = order.yuan;
        amount.setCustomValidity("");
      }, "chip"));
    });
    wrap.appendChild(orders);
    return wrap;
  }

  function checkoutForm(visit) {
    var wrap = el("div", "checkout");
    wrap.appendChild(el("h3", "", T.checkout));
    var held = visit.charges.filter(function (c) { return c.status === "held"; });
    var table = el("table");
    var head = el("tr");
    [T.item, T.amount, T.insurance, T.personal_account, T.self_pay].forEach(function (name, i) {
      head.appendChild(el("th", i ? "money" : "", name));
    });
    table.appendChild(head);
    var rows = held.map(function (charge) {
      var row = el("tr");
      row.appendChild(el("td", "", charge.name));
      row.appendChild(el("td", "money", yuan(charge.amount_fen)));
      var parts = [T.insurance, T.personal_account, T.self_pay].map(function (label, i) {
        var input = el("input");
        input.inputMode = "decimal";
        input.value = fenText(i === 2 ? charge.amount_fen : 0);
        input.setAttribute("aria-label", charge.name + " " + label);
        input.addEventListener("input", check);
        var cell = el("td", "money");
        cell.appendChild(input);
        row.appendChild(cell);
        return input;
      });
      table.appendChild(row);
      return {charge: charge, row: row, parts: parts};
    });
    var scroller = el("div", "table-wrap");  // a narrow phone scrolls the table, not the page
    scroller.appendChild(table);
    wrap.appendChild(scroller);
    var note = el("p", "split-note", T.must_add_up);
    var refused = alertBox();
    var submit = button(T.do_checkout, function () {
      if (!check()) return;
      post(visitPath(visit) + "/checkout", {items: rows.map(function (r) {
        var fen = r.parts.map(function (input) { return toFen(input.value); });
        return {charge_no: r.charge.charge_no, insurance_fen: fen[0], personal_account_fen: fen[1], self_pay_fen: fen[2]};
      })}, refused);
    });
    if (held.length) {
      wrap.appendChild(button(T.split_70, function () {
        rows.forEach(function (r) {
          var insurance = Math.floor(r.charge.amount_fen * 70 / 100);
          r.parts[0].value = fenText(insurance);
          r.parts[1].value = fenText(0);
          r.parts[2].value = fenText(r.charge.amount_fen - insurance);
        });
        check();
      }, "secondary"));
    } else {
      wrap.appendChild(el("p", "", T.nothing_held));
    }
    wrap.appendChild(note);
    wrap.appendChild(submit);
    wrap.appendChild(refused);

    function check() {
      var good = true;
      rows.forEach(function (r) {
        var fen = r.parts.map(function (input) { return toFen(input.value); });
        var adds = fen.every(function (f) { return f !== null; }) && fen[0] + fen[1] + fen[2] === r.charge.amount_fen;
        r.row.classList.toggle("bad", !adds);
        good = good && adds;
      });
      note.hidden = good;
      submit.disabled = !good;
      return good;
    }
    check();
    return wrap;
  }

  function billLine(bill) {
    var line = el("p", "bill");
    line.appendChild(document.createTextNode(format(T.bill, {
      bill_no: bill.bill_no, self_pay: yuan(bill.self_pay_fen), paid: yuan(bill.paid_fen),
      status: config.bill_status[bill.status] || bill.status
    }) + " "));
    line.appendChild(button(T.query_bill, function () {
      call("GET", "/api/v1/bills/" + encodeURIComponent(bill.bill_no), null).then(reload, function () {});
    }, "secondary"));
    line.appendChild(document.createTextNode(" "));
    var pay = el("a", "", T.pay_link);
    pay.href = bill.pay_url;
    pay.target = "_blank";
    pay.rel = "noopener";
    line.appendChild(pay);
    return line;
  }

  // A call that changes something: the visits drawn again when it was done; a refusal said
  // beside the form (`alert`), where nothing changed and the form keeps what was typed.
  function post(path, body, alert) {
    return call("POST", path, body).then(function (exchange) {
      if (exchange.status >= 400) {
        sayRefused(alert, refusalText(exchange));
        return null;
      }
      return reload();
    }, function (error) {
      sayRefused(alert, format(T.failed, {error: error.message}));
    });
  }

  // --- forms -------------------------------------------------------------------------------

  function fillDepartments() {
    var list = document.getElementById("departments");
    list.textContent = "";
    hospital().departments.forEach(function (name) {
      var option = el("option");
      option.value = name;
      list.appendChild(option);
    });
    document.getElementById("department").value = hospital().departments[0] || "";
  }

  document.getElementById("find").addEventListener("submit", function (event) {
    event.preventDefault();
    var idNumber = idInput.value.trim().toUpperCase();
    if (idNumber) find(idNumber);
  });
  Array.prototype.forEach.call(document.querySelectorAll(".chip[data-id-number]"), function (chip) {
    chip.addEventListener("click", function () { find(chip.dataset.idNumber); });
  });
  hospitalSelect.addEventListener("change", function () {
    fillDepartments();
    if (patient) find(patient.id_number);
  });
  var visitAlert = alertBox();
  document.getElementById("open-visit").after(visitAlert);
  checkedInput(document.getElementById("visit-no"));
  document.getElementById("open-visit").addEventListener("submit", function (event) {
    event.preventDefault();
    var visitNo = document.getElementById("visit-no");
    if (!NUMBER.test(visitNo.value)) {
      visitNo.setCustomValidity(T.bad_number);
      visitNo.reportValidity();
      return;
    }
    visitNo.setCustomValidity("");
    sayRefused(visitAlert, "");
    var exclusion = document.getElementById("exclusion").value;
    call("POST", "/api/v1/visits", {visit_no: visitNo.value, id_number: patient.id_number,
                                    department: document.getElementById("department").value.trim(),
                                    kind: document.getElementById("kind").value, exclusion: exclusion || null})
      .then(function (exchange) {
        // A visit off credit may belong to no member, so the list below may not show it: say so here.
        var answer = exchange.answer;
        if (exchange.status >= 400) sayRefused(visitAlert, refusalText(exchange));
        if (exchange.status === 201) {
          patientBox.appendChild(el("p", answer.on_credit ? "ok" : "refused", answer.visit_no + " · " +
            (answer.on_credit ? T.credit_mark : format(T.not_on_credit, {reason: answer.reason}))));
          visitNo.value = "V" + Date.now().toString(36).toUpperCase();
        }
        return reload();
      }, function (error) {
        sayRefused(visitAlert, format(T.failed, {error: error.message}));
      });
  });
  fillDepartments();
})();
