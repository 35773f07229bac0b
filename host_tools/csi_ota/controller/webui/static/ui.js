/* Release upload: the image file as the request body, the signed manifest base64 in
   X-Release-Manifest (exactly the management API's POST /api/releases), CSRF token in a header.
   Errors from the server's verification are shown as text (never as HTML). */
(function () {
  "use strict";
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  function toBase64(buffer) {
    var bytes = new Uint8Array(buffer), text = "";
    for (var i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }
  function show(box, ok, text) {
    box.textContent = text;
    box.className = "message " + (ok ? "ok" : "bad");
    box.hidden = false;
  }
  async function reason(response) {
    var type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") === 0) {
      var body = await response.json();
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
    var doc = new DOMParser().parseFromString(await response.text(), "text/html");
    var message = doc.querySelector(".message");
    return message ? message.textContent.trim() : "HTTP " + response.status;
  }
  document.addEventListener("submit", async function (event) {
    var form = event.target;
    if (!form.matches("form#upload")) return;
    event.preventDefault();
    var box = document.getElementById("upload-result");
    var image = form.querySelector('input[name="image"]').files[0];
    var manifest = form.querySelector('input[name="manifest"]').files[0];
    if (!image || !manifest) { show(box, false, "Choose the image (.bin) and its signed manifest (.manifest)."); return; }
    var button = form.querySelector("button");
    button.disabled = true;
    show(box, true, "Uploading and verifying " + image.name + " …");
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: image,
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/octet-stream",
          "X-Release-Manifest": toBase64(await manifest.arrayBuffer()),
          "X-CSRF-Token": csrfToken()
        }
      });
      if (response.status === 201) {
        var release = await response.json();
        show(box, true, "Stored release " + release.version + " (id " + release.id + ").");
        window.location.assign(release.location);
      } else {
        show(box, false, "Refused (HTTP " + response.status + "): " + await reason(response));
      }
    } catch (error) {
      show(box, false, "Upload failed: " + error);
    } finally {
      button.disabled = false;
    }
  });
})();
/* Every htmx request carries the CSRF token (the server checks it on each change). */
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
});
/* After a live refresh of a rollout, enable exactly the controls its state allows (the buttons
   themselves are never replaced, so a click cannot land on a button being swapped out). */
document.addEventListener("htmx:afterSettle", function () {
  var allowed = document.querySelector("[data-controls]");
  if (!allowed) return;
  var names = allowed.getAttribute("data-controls").split(" ");
  document.querySelectorAll("#control-buttons button[data-action]").forEach(function (button) {
    button.disabled = names.indexOf(button.getAttribute("data-action")) < 0;
  });
});
