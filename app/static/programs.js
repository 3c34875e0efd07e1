// The Programs page's live code sample: as the merchant types in the code format's fields, ask the API
// (GET /api/code-format/sample; App Bridge's fetch adds the session token) for a sample code and what
// the generator says of the format, and show them. Debounced; an older answer never overwrites a newer
// one. Without JavaScript (or without an answer) the sample rendered with the page stays.
(function () {
  "use strict";

  const box = document.querySelector("[data-code-sample]");
  const form = box && box.closest("form");
  if (!form) return;
  const fields = { prefix: "code_prefix", length: "code_length", alphabet: "code_alphabet", pattern: "code_pattern" };
  const code = box.querySelector("[data-sample-code]");
  const fine = box.querySelector("[data-sample-fine]");
  const problem = box.querySelector("[data-sample-problem]");
  let timer = 0;
  let asked = 0;

  function show(answer) {
    code.textContent = answer.example || "—";
    if (answer.problem) {
      problem.textContent = answer.problem;
      problem.hidden = false;
      fine.hidden = true;
    } else {
      fine.textContent = "Room for " + answer.volume.toLocaleString("en-US") + " codes: " + answer.entropy_bits +
        " bits of randomness each.";
      fine.hidden = false;
      problem.hidden = true;
    }
  }

  async function refresh() {
    const url = new URL(box.dataset.codeSample, window.location.href);
    Object.entries(fields).forEach(function ([param, name]) {
      url.searchParams.set(param, form.elements[name].value);
    });
    const ask = ++asked;
    let answer;
    try {
      const response = await fetch(url.toString(), { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (response.ok) answer = body;
      else if (response.status === 400) answer = { example: null, problem: body.error };
      else return;  // not verified, or the server is away: keep what is shown
    } catch (error) {
      return;
    }
    if (ask === asked) show(answer);
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  }

  form.addEventListener("input", function (event) {
    if (Object.values(fields).includes(event.target.name)) later();
  });
  form.addEventListener("reset", later);  // the save bar's Discard puts the stored format back
})();
