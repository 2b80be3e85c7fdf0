// Search as you type on the patient list. Progressive enhancement only: without this
// script the search form is an ordinary GET form and works the same.
(function () {
  "use strict";
  var form = document.getElementById("patient-search");
  if (!form || !window.fetch) { return; }
  var input = form.querySelector("input[name=q]");
  var results = document.getElementById(form.getAttribute("data-results"));
  var url = form.getAttribute("data-results-url");
  if (!input || !results || !url) { return; }
  var timer = null;
  var latest = 0;
  function run() {
    var q = input.value;
    var ticket = ++latest;
    fetch(url + "?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        // Answers can arrive out of order; only the newest query's may be shown.
        if (html === null || ticket !== latest) { return; }
        results.innerHTML = html;
        var page = new URL(window.location.href);
        if (q) { page.searchParams.set("q", q); } else { page.searchParams.delete("q"); }
        window.history.replaceState(null, "", page.toString());
      })
      .catch(function () { /* the form still works by submitting */ });
  }
  input.addEventListener("input", function () {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(run, 150);
  });
})();
