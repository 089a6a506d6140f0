/* Draws nnexp's charts (figures built by nnexp/compare/charts.py) with plotly.js:
   the HTML report inlines this file, the dashboard serves it. */
var nnexpCharts = (function () {
  "use strict";
  var CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

  /* Draw (or redraw in place) one chart {id, title, figure: {data, layout}} into element. */
  function draw(element, chart) {
    // The figure says how tall it is; the element must be too, as responsive charts fill their element.
    element.style.height = (chart.figure.layout.height || 440) + "px";
    return Plotly.react(element, chart.figure.data, chart.figure.layout, CONFIG);
  }

  return { draw: draw, config: CONFIG };
})();
