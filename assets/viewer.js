/*
 * Small browser helpers of the viewer (used by clientside callbacks):
 *  - watchSize: report a graph's plot-area size (device pixels) into a dcc.Store, now and on every resize,
 *    so pictures are rendered at the size they are shown;
 *  - writeUrl: put the view's query string in the address bar (pushState, or replaceState for zoom/pan and
 *    selections) without reloading and without a Dash round trip; back/forward to the address the page was
 *    opened with is reported to the dcc.Location too (see the popstate listener below);
 *  - keepMapSize: the map keeps its height (and so its zoom) when the analysis panel opens under it;
 *  - holdWhileDragging: a new figure that arrives while the user is dragging a box or a lasso on a graph waits
 *    for the mouse to be released. Plotly.js throws (reading 'getAttribute') and loses the selection when a
 *    figure with new axes or a new size is drawn under a drag in progress: a late picture after a zoom, a
 *    window resize, the page's first figures.
 */
window.atlasViewer = (function () {
  "use strict";
  var MAX_RATIO = 2;
  var lastSize = {};

  function noUpdate() {
    return window.dash_clientside.no_update;
  }

  function plotArea(graphId) {
    var outer = document.getElementById(graphId);
    if (!outer || outer.offsetParent === null) {
      return null; // missing or hidden (display: none)
    }
    var gd = outer.querySelector(".js-plotly-plot") || outer;
    var size = gd._fullLayout && gd._fullLayout._size;
    var width, height;
    if (size && size.w > 0 && size.h > 0) {
      width = size.w;
      height = size.h;
    } else {
      var rect = outer.getBoundingClientRect();
      width = rect.width - 68;
      height = rect.height - 52;
    }
    if (!(width > 16 && height > 16)) {
      return null;
    }
    var ratio = Math.min(window.devicePixelRatio || 1, MAX_RATIO);
    return { width_px: Math.round(width * ratio), height_px: Math.round(height * ratio) };
  }

  // True when the picture on screen was rendered at another resolution than the plot shows it
  // (e.g. a figure built before the plot's size was known arrived after a newer one).
  function pictureMismatch(graphId, size) {
    var outer = document.getElementById(graphId);
    var gd = outer && outer.querySelector(".js-plotly-plot");
    var images = gd && gd.layout && gd.layout.images;
    var xaxis = gd && gd._fullLayout && gd._fullLayout.xaxis;
    if (!images || !images.length || !xaxis || !xaxis.range) {
      return false;
    }
    var params = new URLSearchParams(String(images[0].source).split("?")[1] || "");
    var width = parseFloat(params.get("x1")) - parseFloat(params.get("x0"));
    var pictureDensity = parseInt(params.get("w"), 10) / width;
    var screenDensity = size.width_px / Math.abs(xaxis.range[1] - xaxis.range[0]);
    if (!(pictureDensity > 0 && screenDensity > 0)) {
      return false;
    }
    return Math.abs(pictureDensity / screenDensity - 1) > 0.04;
  }

  function report(graphId, storeId) {
    var size = plotArea(graphId);
    if (!size) {
      return;
    }
    var previous = lastSize[storeId];
    var same = previous && Math.abs(previous.width_px - size.width_px) < 2 &&
        Math.abs(previous.height_px - size.height_px) < 2;
    if (same && !pictureMismatch(graphId, size)) {
      previous.check = 0;
      return;
    }
    if (same) {
      size.check = (previous.check || 0) + 1; // a new value, so the picture is drawn again at this size
      if (size.check > 3) {
        return; // never loop: the picture may legitimately differ (size limit)
      }
    }
    lastSize[storeId] = size;
    window.dash_clientside.set_props(storeId, { data: size });
  }

  function watchSize(graphId, storeId) {
    var outer = document.getElementById(graphId);
    if (outer && !outer._atlasObserved && window.ResizeObserver) {
      outer._atlasObserved = true;
      var timer = null;
      new ResizeObserver(function () {
        clearTimeout(timer);
        timer = setTimeout(function () { report(graphId, storeId); }, 120);
      }).observe(outer);
    }
    // measure once Plotly has drawn the new figure
    window.requestAnimationFrame(function () {
      window.setTimeout(function () { report(graphId, storeId); }, 30);
    });
    return noUpdate();
  }

  function writeUrl(data) {
    if (!data || typeof data.query !== "string") {
      return noUpdate();
    }
    var location = window.location;
    var target = location.pathname + data.query + location.hash;
    if (target === location.pathname + location.search + location.hash) {
      return noUpdate();
    }
    if (data.replace) {
      window.history.replaceState(null, "", target);
    } else {
      window.history.pushState(null, "", target);
    }
    return data.query;
  }

  // dcc.Location reports back/forward only when the address differs from the one it holds, which is the address
  // the page was opened with (writeUrl bypasses it). Going back to exactly that address (a shared link, then
  // another section, then back) would change nothing: report it here. Other addresses are left to dcc.Location.
  var locationSearch = window.location.search;
  window.addEventListener("popstate", function () {
    var search = window.location.search;
    if (search === locationSearch && window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(window.atlasIds().url, { search: search });
    }
    locationSearch = search;
  });

  // One click listener for every taxonomy term of the tree and the legend (data-action/level/name
  // attributes): far cheaper for the Dash renderer than one pattern-matching component per term.
  // "across-species" (the "⇄ species" button of a row) is a pick that also opens the panel across species.
  var STORES = { pick: "termPicked", toggle: "treeToggled", "across-species": "termPicked" };
  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-action][data-level][data-name]");
    if (!target || !window.dash_clientside || !window.dash_clientside.set_props) {
      return;
    }
    var action = target.getAttribute("data-action");
    var store = window.atlasIds()[STORES[action]];
    if (!store) {
      return;
    }
    var data = { level: target.getAttribute("data-level"), name: target.getAttribute("data-name"), t: Date.now() };
    if (action === "across-species") {
      data.across = true;
    }
    window.dash_clientside.set_props(store, { data: data });
  });

  // dcc.Graph draws every figure and Patch with the global Plotly.react; it loads plotly.js on demand.
  var HOLD_POLL_MS = 40;
  function holdWhileDragging(plotly) {
    if (!plotly || plotly._atlasHeld || typeof plotly.react !== "function") {
      return false;
    }
    var react = plotly.react;
    plotly.react = function (gd) {
      var self = this, args = arguments;
      if (!gd || !gd._dragging) {
        return react.apply(self, args);
      }
      return new Promise(function (resolve, reject) {
        (function wait() {
          if (gd._dragging) {
            window.setTimeout(wait, HOLD_POLL_MS);
            return;
          }
          try {
            resolve(react.apply(self, args));
          } catch (error) {
            reject(error);
          }
        })();
      });
    };
    plotly._atlasHeld = true;
    return true;
  }
  (function installHold() {
    if (!holdWhileDragging(window.Plotly)) {
      window.setTimeout(installHold, 20);
    }
  })();

  // The analysis panel opens under the map without taking the map's height (see analysis.css): while it is
  // open the map card scrolls and the map keeps the height it had with the panel closed, so the map's size and
  // zoom do not change; opening scrolls the panel into view, closing scrolls the card back to the top.
  // Called with the panel's `hidden`; returns the map card's style (the height as --map-height).
  var closedHeight = {};
  function keepMapSize(hidden, graphId, panelId, cardId) {
    var outer = document.getElementById(graphId);
    if (outer && !outer._atlasHeightWatched && window.ResizeObserver) {
      outer._atlasHeightWatched = true;
      new ResizeObserver(function () {
        var panel = document.getElementById(panelId);
        if (!panel || panel.hidden) {
          closedHeight[graphId] = outer.getBoundingClientRect().height;
        }
      }).observe(outer);
    }
    window.requestAnimationFrame(function () {
      var panel = document.getElementById(panelId), card = document.getElementById(cardId);
      if (panel && !panel.hidden) {
        panel.scrollIntoView({ block: "nearest" });
      } else if (card) {
        card.scrollTop = 0;
      }
    });
    var height = closedHeight[graphId];
    return !hidden && height > 0 ? { "--map-height": Math.round(height) + "px" } : {};
  }

  return { watchSize: watchSize, writeUrl: writeUrl, plotArea: plotArea, holdWhileDragging: holdWhileDragging,
           keepMapSize: keepMapSize };
})();
