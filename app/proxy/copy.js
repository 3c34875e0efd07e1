// OnceCode: the Copy button of a customer's referral link (app/proxy/routes.py serves it as /copy.js
// under the store's app proxy). The page works without it: the link sits in a read-only text field.
// The button is made here, not hidden in the page's markup: a theme's `button { display: … }` would
// show a hidden button that does nothing without JavaScript.
(function () {
  "use strict";
  var fields = document.querySelectorAll("input[data-oncecode-copy]");
  Array.prototype.forEach.call(fields, function (field) {
    var status = document.getElementById(field.getAttribute("data-oncecode-copy"));
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Copy";
    field.insertAdjacentElement("afterend", button);
    field.insertAdjacentText("afterend", " ");
    function say(text) {
      if (status) {
        status.textContent = text;
      }
    }
    function byHand() {
      field.focus();
      field.select();
      var copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (error) {
        copied = false;
      }
      say(copied ? "Link copied." : "Press Ctrl+C (\u2318C on a Mac) to copy the selected link.");
    }
    button.addEventListener("click", function () {
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(function () { say("Link copied."); }, byHand);
      } else {
        byHand();
      }
    });
    field.addEventListener("focus", function () { field.select(); });
  });
})();
