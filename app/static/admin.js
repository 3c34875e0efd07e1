// OnceCode's admin pages (served by the app, no dependencies but App Bridge's `shopify` global).
// Every form and every link to another admin page (a download too) carries a fresh session token
// (id_token), which the server verifies, so a page never has to bounce through the session-token page. A form is sent once:
// a second click while it is on its way does nothing.
(function () {
  "use strict";

  async function freshToken() {
    return window.shopify && typeof window.shopify.idToken === "function" ? window.shopify.idToken() : "";
  }

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.dataset.plain !== undefined) return;
    event.preventDefault();
    if (form.dataset.sending) return;
    form.dataset.sending = "1";
    const submitter = event.submitter;
    let field = form.querySelector("input[name=id_token]");
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "id_token";
      form.append(field);
    }
    try {
      field.value = await freshToken();
    } catch (error) {
      field.value = "";
    }
    if (submitter && submitter.name) {  // keep the clicked button's name=value, which submit() drops
      const chosen = document.createElement("input");
      chosen.type = "hidden";
      chosen.name = submitter.name;
      chosen.value = submitter.value;
      form.append(chosen);
    }
    form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    HTMLFormElement.prototype.submit.call(form);
  });

  document.addEventListener("click", async function (event) {
    const link = event.target instanceof Element ? event.target.closest("a[href^='/admin']") : null;
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || link.target) return;
    event.preventDefault();
    const url = new URL(link.href, window.location.href);
    try {
      url.searchParams.set("id_token", await freshToken());
    } catch (error) {
      url.searchParams.delete("id_token");
    }
    window.location.assign(url.toString());
  });
})();
