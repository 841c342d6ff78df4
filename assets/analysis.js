/*
 * The section gallery's clicks (callbacks/compare.py): the small pictures are one HTML block, each a button
 * carrying data-gallery-section; one listener turns a click into the gallery-picked store.
 */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-gallery-section]");
    if (!target || !window.dash_clientside || !window.dash_clientside.set_props) {
      return;
    }
    window.dash_clientside.set_props(window.atlasIds().galleryPicked, { data: {
      section: target.getAttribute("data-gallery-section"),
      t: Date.now()
    } });
  });
})();
