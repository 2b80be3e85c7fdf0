// The attachment upload form with a progress bar. Progressive enhancement only:
// without this script the form is an ordinary multipart form and works the same.
//
// The form carries a random upload key (made by the server with the page). A retry
// after a network failure sends the same key, and the server stores an upload with a
// key it has seen once: it answers a retry with what it already stored.
(function () {
  "use strict";
  if (!window.XMLHttpRequest || !window.FormData) { return; }
  var forms = document.querySelectorAll("form[data-upload]");
  Array.prototype.forEach.call(forms, function (form) {
    var bar = form.querySelector("progress");
    var status = form.querySelector("[data-upload-status]");
    var button = form.querySelector("button[type=submit]");
    if (!bar || !status || !button) { return; }
    var RETRIES = 4;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(form);
      var tries = 0;
      button.disabled = true;
      bar.hidden = false;
      bar.removeAttribute("value");
      status.textContent = "Uploading…";
      function fail(text) {
        status.textContent = text;
        bar.hidden = true;
        button.disabled = false;
      }
      function send() {
        tries += 1;
        var xhr = new XMLHttpRequest();
        xhr.open("POST", form.action);
        xhr.upload.addEventListener("progress", function (e) {
          if (e.lengthComputable) {
            bar.max = e.total;
            bar.value = e.loaded;
            status.textContent = "Uploading… " + Math.floor(100 * e.loaded / e.total) + "%";
          }
        });
        xhr.addEventListener("load", function () {
          if (xhr.status >= 200 && xhr.status < 300) {
            // The server answered with a redirect to the page listing the files: show
            // it (a reload when it is this very page, which a new fragment alone would
            // only scroll).
            var target = xhr.responseURL.split("#")[0];
            if (target === window.location.href.split("#")[0]) {
              window.location.hash = "attachments";
              window.location.reload();
            } else {
              window.location.assign(target + "#attachments");
            }
            return;
          }
          // A refusal: show the server's own sentence.
          var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
          var p = doc.querySelector("main p, section p, p");
          fail(p ? p.textContent : "The upload was refused (" + xhr.status + ").");
        });
        xhr.addEventListener("error", function () {
          if (tries < RETRIES) {
            status.textContent = "The connection broke off; trying again (" + tries + " of " + (RETRIES - 1) + ")…";
            window.setTimeout(send, 1000 * tries);
          } else {
            fail("The upload did not get through. Check the connection and try again: nothing is stored twice.");
          }
        });
        xhr.send(data);
      }
      send();
    });
  });
})();
