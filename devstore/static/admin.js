// devstore's admin page: the parent side of the App Bridge stand-in (devstore/static/app-bridge.js).
// It answers the framed app's messages as Shopify's admin answers App Bridge's: session tokens, the
// app's nav in the sidebar, the contextual save bar, toasts, the admin URL following the app's page.
// Only messages from the frame's window and the app's origin are answered. Protocol: devstore/README.md.
(function () {
  "use strict";
  var frame = document.getElementById("app-frame");
  if (!frame) { return; }
  var data = frame.dataset;
  var appOrigin = data.appOrigin, homeUrl = data.homeUrl, base = data.base;
  var saveBar = document.getElementById("save-bar");
  var navBox = document.getElementById("app-nav");
  var homeLink = document.getElementById("app-home-link");
  var toasts = document.getElementById("toasts");
  var LAUNCH = ["embedded", "hmac", "host", "id_token", "locale", "session", "shop", "timestamp"];

  function send(message) {
    message.devstoreAppBridge = 1;
    frame.contentWindow.postMessage(message, appOrigin);
  }

  // The admin path for one of the app's URLs: /stores/<shop>/admin/apps/<handle> + what follows the app
  // home, without the launch parameters. null for a URL outside the app.
  function adminPath(url) {
    var u;
    try { u = new URL(url, homeUrl + "/"); } catch (e) { return null; }
    var home = new URL(homeUrl + "/");
    if (u.origin !== home.origin || u.pathname.indexOf(home.pathname.replace(/\/$/, "")) !== 0) { return null; }
    LAUNCH.forEach(function (name) { u.searchParams.delete(name); });
    u.searchParams.delete("shopify-reload");
    var rest = u.pathname.slice(home.pathname.replace(/\/$/, "").length).replace(/^\/+/, "");
    return base + (rest ? "/" + rest : "") + u.search;
  }

  function mintToken() {
    return fetch(data.tokenUrl, { method: "POST", credentials: "same-origin",
                                  headers: { "Content-Type": "application/json" }, body: "{}" })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error(body.error || ("HTTP " + response.status)); }
          return body.id_token;
        });
      });
  }

  var ready = false;   // the page announced the app's client id (its shopify-api-key meta tag)
  var current = null; // admin path of the app's page now shown
  function highlight() {
    var links = navBox.querySelectorAll("a");
    var matched = false;
    links.forEach(function (a) {
      var on = current !== null && a.getAttribute("href") === current.split("?")[0];
      a.classList.toggle("current", on);
      if (on) { matched = true; }
    });
    homeLink.classList.toggle("current", !matched);
  }

  function renderNav(items) {
    navBox.textContent = "";
    items.forEach(function (item) {
      var path = adminPath(item.url);
      if (path === null) { return; }
      var a = document.createElement("a");
      a.href = path;
      a.textContent = item.label;
      navBox.appendChild(a);
    });
    highlight();
  }

  // While the save bar shows, leaving the page is blocked (the bar shakes), as in Shopify's admin.
  document.addEventListener("click", function (event) {
    var a = event.target.closest && event.target.closest(".admin-side a");
    if (a && !saveBar.hidden) {
      event.preventDefault();
      saveBar.classList.remove("shake");
      void saveBar.offsetWidth;
      saveBar.classList.add("shake");
    }
  });

  saveBar.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var action = button.dataset.action;
    if (action === "discard" && saveBar.dataset.confirm === "1" &&
        !window.confirm("Discard all unsaved changes?")) { return; }
    send({ type: "saveBarAction", action: action });
  });

  function toast(message, isError, duration) {
    var div = document.createElement("div");
    div.className = "toast" + (isError ? " error" : "");
    div.textContent = String(message);
    toasts.appendChild(div);
    setTimeout(function () { div.remove(); }, Math.max(1000, Number(duration) || 5000));
  }

  window.addEventListener("message", function (event) {
    if (event.source !== frame.contentWindow || event.origin !== appOrigin) { return; }
    var m = event.data;
    if (!m || m.devstoreAppBridge !== 1 || typeof m.type !== "string") { return; }
    switch (m.type) {
      case "ready":
        if (m.apiKey !== data.apiKey) {
          ready = false;
          toast("App Bridge: the page's shopify-api-key is not this app's client id", true);
          return;
        }
        ready = true;
        send({ type: "config", shop: data.shop, host: data.host, locale: data.locale });
        break;
      case "idToken":
        if (!ready) {
          send({ type: "idToken", id: m.id, error: "the page has not announced this app's shopify-api-key" });
          return;
        }
        mintToken().then(
          function (token) { send({ type: "idToken", id: m.id, idToken: token }); },
          function (error) { send({ type: "idToken", id: m.id, error: String(error.message || error) }); });
        break;
      case "nav":
        renderNav(Array.isArray(m.items) ? m.items : []);
        break;
      case "location":
        var path = adminPath(m.url);
        if (path !== null) {
          current = path;
          history.replaceState(null, "", path);
          highlight();
        }
        break;
      case "saveBar":
        saveBar.hidden = !m.visible;
        saveBar.dataset.confirm = m.discardConfirmation ? "1" : "0";
        break;
      case "toast":
        toast(m.message, !!m.isError, m.duration);
        break;
    }
  });
})();
