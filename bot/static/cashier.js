// The WeChat Pay step of the cashier: hand the signed JSAPI parameters to WeixinJSBridge.
// Outside WeChat there is no bridge; in sandbox mode only, the page names the sandbox
// gateway's stand-in (data-sandbox-pay), which checks the paySign as the bridge does.
(function () {
  "use strict";
  var button = document.getElementById("pay-wechat");
  var data = document.getElementById("jsapi");
  if (!button || !data) return;
  var params = JSON.parse(data.textContent);
  var message = document.getElementById("pay-message");

  function say(text) {
    message.textContent = text;
    message.hidden = false;
    button.disabled = false;
  }

  function finish(errMsg) {
    if (errMsg === "get_brand_wcpay_request:ok") {
      location.href = button.dataset.done;  // the cashier, waiting for the notice
    } else if (errMsg === "get_brand_wcpay_request:cancel") {
      say(button.dataset.cancelled);
    } else {
      say(button.dataset.failed);
    }
  }

  function pay() {
    button.disabled = true;
    message.hidden = true;
    if (typeof WeixinJSBridge !== "undefined") {
      WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) { finish(res.err_msg); });
    } else if (button.dataset.sandboxPay) {
      fetch(button.dataset.sandboxPay, {
        method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(params)
      }).then(function (response) { return response.json(); })
        .then(function (res) { finish(res.err_msg); }, function () { finish(""); });
    } else {
      say(button.dataset.outside);
    }
  }

  button.addEventListener("click", pay);
  // In WeChat the payer already chose WeChat Pay on the bill: open its sheet at once.
  if (typeof WeixinJSBridge !== "undefined") {
    pay();
  } else {
    document.addEventListener("WeixinJSBridgeReady", pay, false);
  }
})();
