/*
 * The page's component ids for these scripts, from one place: components/ids.py (JS_IDS) writes them into the
 * page as a JSON data block (<script id="atlas-ids" type="application/json">); atlasIds() reads it once.
 */
window.atlasIds = (function () {
  "use strict";
  var ids = null;
  return function () {
    if (ids === null) {
      var element = document.getElementById("atlas-ids");
      ids = element ? JSON.parse(element.textContent) : {};
    }
    return ids;
  };
})();
