// OnceCode: the Copy button of a customer's referral link (app/proxy/routes.py serves it as /copy.js
// under the store's app proxy). The page works without it: the link sits in a read-only text field, and
// the button stays hidden until this script shows it.
(function () {
  "use strict";
  var buttons = document.querySelectorAll("button[data-oncecode-copy]");
  Array.prototype.forEach.call(buttons, function (button) {
    var field = document.getElementById(button.getAttribute("data-oncecode-copy"));
    var status = document.getElementById(button.getAttribute("data-oncecode-status"));
    if (!field) {
      return;
    }
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
    button.hidden = false;
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
