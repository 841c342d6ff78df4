/*
 * "Copy link" in the browser: show the short link the server made (always, in a text box) and copy it to the
 * clipboard. navigator.clipboard needs a secure context (https or localhost) and may be refused; then the text
 * is selected for Ctrl+C. No error reaches the console either way.
 */
window.atlasExport = (function () {
  "use strict";

  function status(text) {
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(window.atlasIds().shareStatus, { children: text });
    }
  }

  function selectField() {
    var field = document.getElementById(window.atlasIds().shareUrl);
    if (field) {
      field.focus();
      field.select();
    }
    return field;
  }

  function fallbackCopy() {
    var field = selectField();
    var copied = false;
    try {
      copied = !!(field && document.execCommand && document.execCommand("copy"));
    } catch (err) {
      copied = false;
    }
    status(copied ? "Copied to the clipboard" : "Select the link and copy it (Ctrl+C)");
  }

  function showLink(data) {
    var noUpdate = window.dash_clientside.no_update;
    if (!data) {
      return [noUpdate, noUpdate, noUpdate];
    }
    var origin = window.location.origin;
    if (data.error) {
      return [data.long ? origin + data.long : "", false, data.error];
    }
    var url = origin + data.path;
    window.setTimeout(function () {
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url).then(function () {
          selectField();
          status("Copied to the clipboard");
        }, fallbackCopy);
      } else {
        fallbackCopy();
      }
    }, 0);
    return [url, false, "Copying…"];
  }

  return { showLink: showLink };
})();
