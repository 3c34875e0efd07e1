// devstore's App Bridge stand-in: what an app uses of Shopify's App Bridge
// (https://cdn.shopify.com/shopifycloud/app-bridge.js), for an app framed by devstore's admin page.
// Load it like App Bridge, after <meta name="shopify-api-key" content="CLIENT_ID">:
//   <script src="http://127.0.0.1:8001/_devstore/app-bridge.js"></script>
// It provides window.shopify.config, shopify.idToken(), shopify.toast.show(); patches fetch so that
// requests to the app's own origin (and its subdomains) carry "Authorization: Bearer <fresh token>";
// follows "shopify-reload" (the bounce page); sends <s-app-nav> to the admin's sidebar; runs the
// contextual save bar of <form data-save-bar>. It talks to the admin page (devstore/static/admin.js)
// with window.postMessage, as App Bridge talks to Shopify's admin. Protocol: devstore/README.md.
(function () {
  "use strict";
  if (window.shopify && window.shopify.__devstore) { return; }
  var script = document.currentScript;
  var ADMIN_ORIGIN = new URL(script ? script.src : location.href).origin;
  var framed = window.parent !== window;
  var meta = document.querySelector('meta[name="shopify-api-key"]');
  var params = new URLSearchParams(location.search);
  var stored = {};
  try { stored = JSON.parse(sessionStorage.getItem("devstore-app-bridge") || "{}"); } catch (e) { stored = {}; }

  var config = {
    apiKey: meta ? meta.getAttribute("content") : "",
    shop: params.get("shop") || stored.shop || "",
    host: params.get("host") || stored.host || "",
    locale: params.get("locale") || stored.locale || "en"
  };
  function remember() {
    try { sessionStorage.setItem("devstore-app-bridge", JSON.stringify(
      { shop: config.shop, host: config.host, locale: config.locale })); } catch (e) { /* storage off */ }
  }
  remember();

  function post(message) {
    if (!framed) { return; }
    message.devstoreAppBridge = 1;
    window.parent.postMessage(message, ADMIN_ORIGIN);
  }

  // --- session tokens ------------------------------------------------------------------------------
  var pending = {};
  var nextId = 1;
  function idToken() {
    if (!framed) {
      return Promise.reject(new Error("App Bridge (devstore): not framed by the admin, no session token"));
    }
    return new Promise(function (resolve, reject) {
      var id = nextId++;
      var timer = setTimeout(function () {
        delete pending[id];
        reject(new Error("App Bridge (devstore): the admin did not answer the session token request"));
      }, 10000);
      pending[id] = function (m) {
        clearTimeout(timer);
        delete pending[id];
        if (m.idToken) { resolve(m.idToken); } else { reject(new Error(m.error || "no session token")); }
      };
      post({ type: "idToken", id: id });
    });
  }

  // --- messages from the admin ---------------------------------------------------------------------
  var saveBarForm = null;
  window.addEventListener("message", function (event) {
    if (event.source !== window.parent || event.origin !== ADMIN_ORIGIN) { return; }
    var m = event.data;
    if (!m || m.devstoreAppBridge !== 1) { return; }
    if (m.type === "idToken" && pending[m.id]) {
      pending[m.id](m);
    } else if (m.type === "config") {
      config.shop = m.shop || config.shop;
      config.host = m.host || config.host;
      config.locale = m.locale || config.locale;
      remember();
    } else if (m.type === "saveBarAction" && saveBarForm) {
      saveBarAction(m.action, false);
    }
  });
  post({ type: "ready", apiKey: config.apiKey, url: location.href });

  // --- fetch: the session token on requests to the app -----------------------------------------------
  var originalFetch = window.fetch.bind(window);
  function toApp(url) {
    var u = new URL(url, location.href);
    if (u.origin === location.origin) { return true; }
    return u.protocol === location.protocol && u.hostname.endsWith("." + location.hostname);
  }
  function withToken(request) {
    return idToken().then(function (token) {
      var headers = new Headers(request.headers);
      headers.set("Authorization", "Bearer " + token);
      if (!headers.has("Accept-Language")) { headers.set("Accept-Language", config.locale); }
      return new Request(request, { headers: headers });
    });
  }
  window.fetch = function (input, init) {
    var request = new Request(input, init);
    if (!framed || !toApp(request.url) || request.headers.has("Authorization")) { return originalFetch(request); }
    var retry = request.clone();
    return withToken(request).then(originalFetch).then(function (response) {
      // A 401 asking for it is retried once with a new token (X-Shopify-Retry-Invalid-Session-Request).
      if (response.status === 401 && response.headers.get("X-Shopify-Retry-Invalid-Session-Request") === "1") {
        return withToken(retry).then(originalFetch);
      }
      return response;
    });
  };

  // --- the bounce: ?shopify-reload=<path or app URL> → that URL with a fresh id_token ---------------
  var reload = params.get("shopify-reload");
  if (reload) {
    var target = new URL(reload, location.href);
    if (target.origin === location.origin) {
      idToken().then(function (token) {
        target.searchParams.set("id_token", token);
        location.replace(target.href);
      }, function (error) { console.error(error); });
    } else {
      console.error("App Bridge (devstore): shopify-reload must stay on the app's origin", reload);
    }
  }

  // --- toasts -----------------------------------------------------------------------------------------
  function toastInPage(message, isError, duration) {
    var box = document.getElementById("devstore-toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "devstore-toasts";
      box.setAttribute("role", "status");
      box.style.cssText = "position:fixed;bottom:24px;left:50%;transform:translateX(-50%);z-index:2147483647;" +
        "display:flex;flex-direction:column;gap:8px";
      document.body.appendChild(box);
    }
    var div = document.createElement("div");
    div.textContent = String(message);
    div.style.cssText = "background:" + (isError ? "#c70a24" : "#1a1a1a") +
      ";color:#fff;padding:10px 16px;border-radius:10px;font:550 14px/1.4 system-ui,sans-serif";
    box.appendChild(div);
    setTimeout(function () { div.remove(); }, duration);
  }
  var toast = {
    show: function (message, options) {
      var o = options || {};
      var duration = Math.max(1000, Number(o.duration) || 5000);
      if (framed) { post({ type: "toast", message: String(message), isError: !!o.isError, duration: duration }); }
      else { toastInPage(message, !!o.isError, duration); }
      return "devstore-toast-" + nextId++;
    },
    hide: function () { /* toasts go by themselves */ }
  };

  // --- the contextual save bar: <form data-save-bar> ----------------------------------------------
  var initial = new Map();
  var inPageBar = null;
  function snapshot(form) {
    return JSON.stringify(Array.from(new FormData(form).entries()).map(function (pair) {
      return [pair[0], typeof pair[1] === "string" ? pair[1] : pair[1].name];
    }));
  }
  function showBar(form, visible) {
    saveBarForm = visible ? form : null;
    if (framed) {
      post({ type: "saveBar", visible: visible,
             discardConfirmation: !!(form && form.hasAttribute("data-discard-confirmation")) });
      return;
    }
    if (!inPageBar) {
      inPageBar = document.createElement("div");
      inPageBar.setAttribute("role", "region");
      inPageBar.setAttribute("aria-label", "Unsaved changes");
      inPageBar.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:2147483646;display:flex;" +
        "justify-content:space-between;align-items:center;padding:10px 16px;background:#1a1a1a;color:#fff;" +
        "font:650 14px/1.4 system-ui,sans-serif";
      inPageBar.innerHTML = '<span>Unsaved changes</span><span><button type="button" data-action="discard">' +
        'Discard</button> <button type="button" data-action="save">Save</button></span>';
      inPageBar.addEventListener("click", function (event) {
        var button = event.target.closest("button[data-action]");
        if (button) { saveBarAction(button.dataset.action, true); }
      });
      document.body.appendChild(inPageBar);
    }
    inPageBar.hidden = !visible;
  }
  function saveBarAction(action, confirmHere) {
    var form = saveBarForm;
    if (!form) { return; }
    if (action === "save") {
      if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
    } else if (action === "discard") {
      if (confirmHere && form.hasAttribute("data-discard-confirmation") &&
          !window.confirm("Discard all unsaved changes?")) { return; }
      form.reset();
    }
  }
  function watch(form) {
    initial.set(form, snapshot(form));
    function changed() { showBar(form, snapshot(form) !== initial.get(form)); }
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    form.addEventListener("submit", function (event) {
      if (!event.defaultPrevented) { showBar(form, false); }
      // A form the page submits itself (fetch) keeps its new values as the saved state.
      setTimeout(function () { initial.set(form, snapshot(form)); }, 0);
    });
    form.addEventListener("reset", function () {
      showBar(form, false);
      setTimeout(function () { initial.set(form, snapshot(form)); }, 0);
    });
  }

  // --- <s-app-nav>: the app's navigation in the admin's sidebar --------------------------------------
  function navItems(nav) {
    var items = [];
    nav.querySelectorAll("a[href], s-link[href]").forEach(function (link) {
      if ((link.getAttribute("rel") || "").split(/\s+/).indexOf("home") !== -1) { return; }
      items.push({ label: link.textContent.trim(), url: new URL(link.getAttribute("href"), location.href).href });
    });
    return items;
  }
  function showNavInPage(nav) {
    // Not framed: the links stay visible in the page (s-link becomes a plain link).
    nav.querySelectorAll("s-link[href]").forEach(function (link) {
      var a = document.createElement("a");
      a.href = link.getAttribute("href");
      a.textContent = link.textContent;
      if (link.getAttribute("rel")) { a.setAttribute("rel", link.getAttribute("rel")); }
      link.replaceWith(a);
    });
  }

  function start() {
    var style = document.createElement("style");
    style.textContent = framed ? "s-app-nav, ui-nav-menu { display: none !important; }"
      : "s-app-nav, ui-nav-menu { display: flex; flex-wrap: wrap; gap: 12px; margin: 0 0 12px; }";
    document.head.appendChild(style);
    var nav = document.querySelector("s-app-nav, ui-nav-menu");
    if (nav) {
      if (framed) { post({ type: "nav", items: navItems(nav) }); } else { showNavInPage(nav); }
    }
    if (!reload) { post({ type: "location", url: location.href }); }
    post({ type: "saveBar", visible: false, discardConfirmation: false }); // a new page has no unsaved changes
    document.querySelectorAll("form[data-save-bar]").forEach(watch);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }

  window.shopify = {
    __devstore: true,
    config: config,
    idToken: idToken,
    toast: toast
  };
})();
