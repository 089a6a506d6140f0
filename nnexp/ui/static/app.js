/* nnexp ui: the pages' code. Each page is an HTML shell; this fetches the JSON API and fills it in.
   Every value that comes from a run is set as text (textContent, attributes), never parsed as markup. */
(function () {
  "use strict";

  // ------------------------------------------------------------------ helpers

  /* An element with attributes ({class, href, title, ...; text: its text}) and children (nodes or strings). */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) { return; }
      if (key === "text") { node.textContent = String(value); } else { node.setAttribute(key, String(value)); }
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function $(id) { return document.getElementById(id); }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }

  // ------------------------------------------------------------------ where answers come from

  /* A page of an export (nnexp ui --export, nnexp/ui/export.py) has no server: each API answer is a small
     script in data/ that the export wrote (browsers refuse fetch() of file:// URLs), loaded with a <script>. */
  var STATIC = document.body.hasAttribute("data-static");
  var stored = {};

  /* The name an export gives the answer to `url`: its path and query (parameters sorted, empty ones left
     out), every character but letters, digits, '.' and '-' written _xx (export.py: answer_name). */
  function answerName(url) {
    var parts = url.split("?"), pairs = [];
    new URLSearchParams(parts[1] || "").forEach(function (value, key) { if (value !== "") { pairs.push([key, value]); } });
    pairs.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; });
    var key = parts[0].replace(/^\/api\//, "") + (pairs.length ? "?" + pairs.map(function (p) { return p[0] + "=" + p[1]; }).join("&") : "");
    return key.replace(/[^A-Za-z0-9.-]/g, function (c) {
      var code = c.charCodeAt(0);
      return code < 256 ? "_" + ("0" + code.toString(16)).slice(-2) : "_u" + ("000" + code.toString(16)).slice(-4);
    });
  }

  /* The exported answer to `url`, loaded once; rejects with its error, or when the export does not hold it. */
  function exported(url) {
    var name = answerName(url);
    if (!stored[name]) {
      stored[name] = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = "data/" + name + ".js";
        script.onload = function () {
          var answer = (window.nnexpAnswers || {})[name];
          if (!answer) { reject(new Error("this export holds no answer to " + url)); }
          else if (answer.status !== 200) { reject(new Error(answer.body.error || String(answer.status))); }
          else { resolve(answer.body); }
        };
        script.onerror = function () { reject(new Error("this view is not in the export (it needs the live dashboard, nnexp ui)")); };
        document.head.appendChild(script);
      });
    }
    return stored[name];
  }

  /* GET a JSON answer; rejects with the API's error message. An export answers from its files; its runs
     table, from the list of all its runs (runsAnswer). */
  function getJSON(url) {
    if (STATIC) {
      var path = url.split("?")[0];
      return path === "/api/runs" ? exported(path).then(function (all) { return runsAnswer(all, url); }) : exported(url);
    }
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-cache" }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) { throw new Error(body.error || (response.status + " " + response.statusText)); }
        return body;
      });
    });
  }

  /* Numbers before text, each in its own order; null for a missing value (compare/select.py: _sort_key). */
  function sortKey(v) {
    if (v === null || v === undefined || (typeof v === "number" && isNaN(v))) { return null; }
    if (typeof v === "number") { return [0, v, ""]; }
    if (Array.isArray(v)) { v = v.join(","); }
    return [1, 0, String(v).toLowerCase()];
  }

  /* The runs table's page for `url` (q, tag, status, sweep, sort, order, offset, limit) from every run of an
     export, as the server answers /api/runs (api.py: Api.runs). */
  function runsAnswer(all, url) {
    var query = new URLSearchParams(url.split("?")[1] || "");
    function get(k) { return (query.get(k) || "").trim(); }
    function list(k) { return get(k).split(",").map(function (s) { return s.trim(); }).filter(Boolean); }
    if (get("where")) { throw new Error("a --where filter needs the live dashboard (nnexp ui): an export holds no query engine"); }
    var text = get("q").toLowerCase(), tags = list("tag"), statuses = list("status"), sweep = get("sweep");
    var sort = get("sort") || "started", order = get("order") || (sort === "started" ? "desc" : "asc");
    var offset = Math.max(0, parseInt(get("offset") || "0", 10) || 0);
    var limit = Math.min(1000, Math.max(1, parseInt(get("limit") || "50", 10) || 50));
    var field = all.sort_fields[sort] || sort;
    var chosen = all.runs.filter(function (r) {
      var own = Array.isArray(r.tags) ? r.tags.map(String) : [];
      return (!sweep || r.sweep === sweep) && tags.every(function (t) { return own.indexOf(t) >= 0; }) &&
        (!statuses.length || statuses.indexOf(r.status) >= 0) &&
        (!text || r.id.toLowerCase().indexOf(text) >= 0 || String(present(r.name) ? r.name : "").toLowerCase().indexOf(text) >= 0);
    });
    var keyed = chosen.map(function (r) { return [sortKey(r[field]), r]; });
    var sign = order === "desc" ? -1 : 1;
    var ranked = keyed.filter(function (k) { return k[0] !== null; }).sort(function (a, b) {
      for (var i = 0; i < 3; i++) { if (a[0][i] !== b[0][i]) { return (a[0][i] < b[0][i] ? -1 : 1) * sign; } }
      return 0;
    }).concat(keyed.filter(function (k) { return k[0] === null; }));  // missing values last
    return { total: ranked.length, in_store: all.in_store, offset: offset, limit: limit, sort: sort, order: order,
             runs: ranked.slice(offset, offset + limit).map(function (k) { return k[1]; }) };
  }

  /* Where a page or a run's file is: the server's paths, or the export's files beside the page. */
  function runHref(id) { return STATIC ? "run-" + encodeURIComponent(id) + ".html" : "/runs/" + encodeURIComponent(id); }
  function sweepHref(id) { return STATIC ? "sweep-" + encodeURIComponent(id) + ".html" : "/sweeps/" + encodeURIComponent(id); }
  function compareHref(query) { return (STATIC ? "compare.html?" : "/compare?") + query; }
  function fileHref(url) { return STATIC ? url.replace(/^\//, "") : url; }

  /* The page's query in the address bar, so that a view can be bookmarked (a file:// page may refuse). */
  function keepInAddress(url) { try { history.replaceState(null, "", url); } catch (e) { /* kept in the page only */ } }

  function showError(error) {
    var box = $("error");
    if (!box) { return; }
    box.hidden = !error;
    box.textContent = error ? String(error.message || error) : "";
  }

  function isNumber(v) { return typeof v === "number" && isFinite(v); }

  function present(v) { return v !== null && v !== undefined; }

  /* "done/planned" epochs, "?" for an unknown part. */
  function epochsText(done, planned) {
    return (present(done) ? done : "?") + "/" + (present(planned) ? planned : "?");
  }

  function percent(v) { return isNumber(v) ? (v * 100).toFixed(2) + "%" : "-"; }

  function number(v) {
    if (!isNumber(v)) { return v === null || v === undefined ? "-" : String(v); }
    if (Number.isInteger(v)) { return v.toLocaleString("en-US"); }
    return String(Number(v.toPrecision(4)));
  }

  /* A value of a run's summary or config as text: accuracies (fractions) in percent. */
  function valueText(key, v) {
    if (v === null || v === undefined) { return "-"; }
    if (isNumber(v) && /accuracy/.test(key) && v >= 0 && v <= 1) { return percent(v); }
    if (isNumber(v) && Number.isInteger(v) && !/params|size/.test(key)) { return String(v); }  // times, ids, seeds
    if (typeof v === "number") { return number(v); }
    if (typeof v === "object") { return JSON.stringify(v); }
    return String(v);
  }

  function badge(status) {
    return el("span", { "class": "badge status-" + String(status || "unknown").replace(/[^a-z]/g, ""),
                        text: status || "unknown" });
  }

  function setBadge(node, status) {
    node.textContent = status || "unknown";
    node.className = "badge status-" + String(status || "unknown").replace(/[^a-z]/g, "");
  }

  function tagList(tags) {
    var span = el("span", { "class": "tags" });
    (Array.isArray(tags) ? tags : []).forEach(function (t) { span.appendChild(el("span", { "class": "tag", text: t })); });
    return span;
  }

  /* Call fn every `ms` while the page is visible and the last call has settled; returns a stopper. */
  function every(ms, fn) {
    if (STATIC) { return function () {}; }  // an export does not change
    var busy = false, stopped = false;
    var timer = setInterval(function () {
      if (busy || stopped || document.visibilityState === "hidden") { return; }
      busy = true;
      Promise.resolve().then(fn).catch(function () {}).then(function () { busy = false; });
    }, ms);
    return function () { stopped = true; clearInterval(timer); };
  }

  /* Draw charts ({id, title, figure, wide}) into container, one element each, redrawn in place on later calls. */
  function drawCharts(container, charts, drawn) {
    var seen = {};
    // Every element first, then the drawing: a chart takes the width its element has when drawn.
    charts.forEach(function (chart) {
      if (!drawn[chart.id]) {
        drawn[chart.id] = el("div", { "class": "chart" + (chart.wide ? " wide" : ""), "data-chart-id": chart.id,
                                      role: "img", "aria-label": chart.title });
        container.appendChild(drawn[chart.id]);
      }
      seen[chart.id] = true;
    });
    charts.forEach(function (chart) { nnexpCharts.draw(drawn[chart.id], chart); });
    Object.keys(drawn).forEach(function (id) {
      if (!seen[id]) { Plotly.purge(drawn[id]); drawn[id].remove(); delete drawn[id]; }
    });
  }

  /* A table the API returned ({name, columns, rows of {value, text}}), sortable by clicking a header. */
  function dataTable(table) {
    var head = el("tr"), body = el("tbody");
    var rows = table.rows.slice(), sortedBy = -1, direction = 1;
    function fill() {
      clear(body);
      rows.forEach(function (row) {
        var tr = el("tr");
        row.forEach(function (cell, i) {
          var column = table.columns[i];
          var numeric = isNumber(cell.value);
          var content = column === "id" && typeof cell.value === "string"
            ? el("a", { href: runHref(cell.value), text: cell.text }) : document.createTextNode(cell.text);
          tr.appendChild(el("td", { "class": (numeric ? "num" : "") + (cell.value === null ? " missing" : "") },
                            [content]));
        });
        body.appendChild(tr);
      });
    }
    table.columns.forEach(function (column, i) {
      var th = el("th", { scope: "col", tabindex: "0", title: "sort by " + column, text: column });
      function sort() {
        direction = sortedBy === i ? -direction : 1;
        sortedBy = i;
        rows.sort(function (a, b) {
          var x = a[i].value, y = b[i].value;
          if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
          if (typeof x === "object") { x = JSON.stringify(x); }
          if (typeof y === "object") { y = JSON.stringify(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * direction;
        });
        Array.prototype.forEach.call(head.children, function (h, j) {
          h.setAttribute("aria-sort", j === i ? (direction > 0 ? "ascending" : "descending") : "none");
        });
        fill();
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
      head.appendChild(th);
    });
    fill();
    return el("div", { "class": "table-wrap" }, [el("table", { "class": "data", "data-table": table.name },
                                                    [el("thead", {}, [head]), body])]);
  }

  function drawTables(container, tables) {
    clear(container);
    tables.forEach(function (table) {
      if (table.name !== "table") { container.appendChild(el("h3", { text: table.name.replace(/_/g, " ") })); }
      container.appendChild(dataTable(table));
    });
  }

  // ------------------------------------------------------------------ the runs page

  var RUN_COLUMNS = [
    { key: "id", label: "run", sort: "id" },
    { key: "name", label: "name", sort: "name" },
    { key: "status", label: "status", sort: "status" },
    { key: "epochs", label: "epochs", sort: "epochs", num: true },
    { key: "val_acc", label: "val acc", sort: "val_acc", num: true },
    { key: "test_acc", label: "test acc", sort: "test_acc", num: true },
    { key: "params", label: "params", sort: "params", num: true },
    { key: "train_s", label: "train s", sort: "train_s", num: true },
    { key: "started", label: "started", sort: "started" },
    { key: "tags", label: "tags", sort: "tags" },
    { key: "sweep", label: "sweep", sort: "sweep" }
  ];

  function runCell(key, run) {
    switch (key) {
      case "id": return el("a", { href: runHref(run.id), text: run.id });
      case "name": return document.createTextNode(run.name === undefined || run.name === null ? "-" : String(run.name));
      case "status": return badge(run.status);
      case "epochs":
        return document.createTextNode(epochsText(run.epochs_completed, run.epochs_planned));
      case "val_acc": return document.createTextNode(percent(run.final_val_accuracy));
      case "test_acc": return document.createTextNode(percent(run.test_accuracy));
      case "params": return document.createTextNode(number(run.params));
      case "train_s": return document.createTextNode(isNumber(run.train_seconds) ? run.train_seconds.toFixed(1) : "-");
      case "started":  // 2026-01-02T03:04:05+0000 -> 2026-01-02 03:04:05
        return document.createTextNode(run.started ? String(run.started).replace("T", " ").replace(/[+-]\d{4}$/, "") : "-");
      case "tags": return tagList(run.tags);
      case "sweep": return run.sweep ? el("a", { href: sweepHref(run.sweep), text: run.sweep }) : document.createTextNode("-");
      default: return document.createTextNode("-");
    }
  }

  function runsPage() {
    var params = new URLSearchParams(location.search);
    var state = {
      q: params.get("q") || "", where: params.get("where") || "", tag: params.get("tag") || "",
      status: params.get("status") || "", sweep: params.get("sweep") || "",
      sort: params.get("sort") || "started", order: params.get("order") || "desc",
      offset: Math.max(0, parseInt(params.get("offset") || "0", 10) || 0),
      limit: parseInt(params.get("limit") || "50", 10) || 50
    };
    var selected = new Set(), total = 0, first = true;
    ["q", "where", "tag", "status"].forEach(function (k) { $(k).value = state[k]; });
    $("limit").value = String(state.limit);

    var head = document.querySelector("#runs thead tr");
    var all = el("input", { type: "checkbox", title: "select this page", "aria-label": "select this page" });
    head.appendChild(el("th", { "class": "select" }, [all]));
    RUN_COLUMNS.forEach(function (column) {
      var th = el("th", { scope: "col", tabindex: "0", "data-sort": column.sort, "class": column.num ? "num" : null,
                          title: "sort by " + column.label, text: column.label });
      function sortBy() {
        if (state.sort === column.sort) { state.order = state.order === "asc" ? "desc" : "asc"; }
        else { state.sort = column.sort; state.order = column.num || column.sort === "started" ? "desc" : "asc"; }
        state.offset = 0;
        load();
      }
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(); } });
      head.appendChild(th);
    });

    function query() {
      var q = new URLSearchParams();
      Object.keys(state).forEach(function (k) { if (state[k] !== "" && state[k] !== null) { q.set(k, state[k]); } });
      return q;
    }

    function updateSelection() {
      $("selection").textContent = selected.size ? selected.size + " selected" : "";
      $("compare").disabled = selected.size < 1;
      $("clear").disabled = selected.size < 1;
    }

    function render(page) {
      var body = clear(document.querySelector("#runs tbody"));
      page.runs.forEach(function (run) {
        var box = el("input", { type: "checkbox", "aria-label": "select " + run.id, "data-id": run.id });
        box.checked = selected.has(run.id);
        box.addEventListener("change", function () {
          if (box.checked) { selected.add(run.id); } else { selected.delete(run.id); }
          updateSelection();
        });
        var tr = el("tr", { "data-id": run.id }, [el("td", { "class": "select" }, [box])]);
        RUN_COLUMNS.forEach(function (column) {
          tr.appendChild(el("td", { "class": column.num ? "num" : (column.key === "started" ? "nowrap" : null) },
                            [runCell(column.key, run)]));
        });
        body.appendChild(tr);
      });
      total = page.total;
      var shown = page.runs.length;
      $("count").textContent = total === page.in_store
        ? total.toLocaleString("en-US") + " runs"
        : total.toLocaleString("en-US") + " of " + page.in_store.toLocaleString("en-US") + " runs match";
      $("page").textContent = shown ? (page.offset + 1) + "–" + (page.offset + shown) + " of " + total.toLocaleString("en-US") : "no runs";
      $("prev").disabled = page.offset <= 0;
      $("next").disabled = page.offset + shown >= total;
      Array.prototype.forEach.call(head.querySelectorAll("th[data-sort]"), function (th) {
        var on = th.getAttribute("data-sort") === state.sort;
        th.setAttribute("aria-sort", on ? (state.order === "asc" ? "ascending" : "descending") : "none");
      });
      all.checked = shown > 0 && page.runs.every(function (r) { return selected.has(r.id); });
      updateSelection();
      if (first) { first = false; window.nnexpReady = performance.now(); }
    }

    function load() {
      var q = query();
      keepInAddress(q.toString() ? "?" + q.toString() : location.pathname);
      return getJSON("/api/runs?" + q.toString()).then(function (page) { showError(null); render(page); })
        .catch(function (error) { showError(error); $("count").textContent = ""; });
    }

    all.addEventListener("change", function () {
      Array.prototype.forEach.call(document.querySelectorAll("#runs tbody input[type=checkbox]"), function (box) {
        box.checked = all.checked;
        if (all.checked) { selected.add(box.getAttribute("data-id")); } else { selected.delete(box.getAttribute("data-id")); }
      });
      updateSelection();
    });
    $("filters").addEventListener("submit", function (e) {
      e.preventDefault();
      ["q", "where", "tag", "status"].forEach(function (k) { state[k] = $(k).value.trim(); });
      state.offset = 0;
      load();
    });
    ["tag", "status"].forEach(function (k) {
      $(k).addEventListener("change", function () { state[k] = $(k).value; state.offset = 0; load(); });
    });
    $("limit").addEventListener("change", function () { state.limit = parseInt($("limit").value, 10); state.offset = 0; load(); });
    $("prev").addEventListener("click", function () { state.offset = Math.max(0, state.offset - state.limit); load(); });
    $("next").addEventListener("click", function () { state.offset += state.limit; load(); });
    $("clear").addEventListener("click", function () {
      selected.clear();
      Array.prototype.forEach.call(document.querySelectorAll("#runs input[type=checkbox]"), function (b) { b.checked = false; });
      updateSelection();
    });
    $("compare").addEventListener("click", function () {
      location.href = compareHref("ids=" + Array.from(selected).map(encodeURIComponent).join(","));
    });

    load();
    getJSON("/api/tags").then(function (facets) {
      var select = $("tag");
      Object.keys(facets.tags).forEach(function (t) {
        select.appendChild(el("option", { value: t, text: t + " (" + facets.tags[t] + ")" }));
      });
      select.value = state.tag;
    }).catch(function () {});
    every(5000, load);  // statuses change, runs appear
  }

  // ------------------------------------------------------------------ a run's page

  /* Rows of [key, value], each value as its text (default: valueText). */
  function kvTable(table, entries, text) {
    clear(table);
    var body = el("tbody");
    entries.forEach(function (entry) {
      body.appendChild(el("tr", {}, [el("th", { scope: "row", text: entry[0] }),
                                     el("td", { text: (text || valueText)(entry[0], entry[1]) })]));
    });
    table.appendChild(body);
  }

  function runPage() {
    var id = $("main").getAttribute("data-run");
    var status = null, epochs = 0, curvesDrawn = {}, diagnosticsDrawn = {};

    function loadRun() {
      return getJSON("/api/runs/" + encodeURIComponent(id)).then(function (run) {
        var summary = run.summary || {};
        status = run.status;
        document.title = (summary.name || run.id) + " · nnexp";
        $("title").textContent = summary.name ? String(summary.name) : run.id;
        setBadge($("status"), run.status);
        clear($("tags")).appendChild(tagList(summary.tags));
        $("live").hidden = run.status !== "running";
        $("reason").hidden = !summary.reason;
        $("reason").textContent = summary.reason ? "reason: " + summary.reason : "";
        // the server writes each field as nnexp show does (times as dates, accuracies as percents)
        kvTable($("summary"), Object.keys(summary).map(function (k) { return [k, run.summary_text[k]]; }),
                function (k, text) { return text; });
        kvTable($("config"), Object.keys(run.params || {}).sort().map(function (k) { return [k, run.params[k]]; }));
        $("failure").hidden = !run.error;
        $("error-text").textContent = run.error || "";
        var plots = clear($("plots"));
        if (!run.plots.length) { plots.appendChild(el("p", { "class": "meta", text: "no plots yet (they are drawn when the run ends)" })); }
        run.plots.forEach(function (plot) {
          var name = plot.path.replace(/^plots\//, "").replace(/\.png$/, "").replace(/_/g, " ");
          plots.appendChild(el("figure", {}, [
            el("a", { href: fileHref(plot.url) }, [el("img", { src: fileHref(plot.url) + "?size=" + plot.size, alt: name })]),
            el("figcaption", { text: name })]));
        });
        var files = clear($("files"));
        run.files.forEach(function (f) {
          var size = f.size.toLocaleString("en-US") + " bytes" + (f.too_large ? ", too large to show" : "");
          files.appendChild(el("li", {}, [f.too_large ? el("span", { text: f.path }) : el("a", { href: fileHref(f.url), text: f.path }),
                                          " ", el("span", { "class": "meta", text: "(" + size + ")" })]));
        });
        var warnings = clear($("diagnostics-warnings"));
        (run.warnings || []).forEach(function (text) { warnings.appendChild(el("li", { text: text })); });
        if (!run.diagnostics) {
          $("diagnostics-note").hidden = false;
          $("diagnostics-note").textContent = run.diagnostics_problem
            ? "diagnostics not shown: " + run.diagnostics_problem
            : "no diagnostics recorded for this run (diagnostics.csv)";
        } else {
          $("diagnostics-note").hidden = true;
        }
        showError(null);
      });
    }

    function loadCharts() {
      return getJSON("/api/runs/" + encodeURIComponent(id) + "/charts").then(function (answer) {
        epochs = answer.epochs;
        var isCurve = function (c) { return c.id === "curves" || c.id.indexOf("curves-") === 0; };
        var curves = answer.charts.filter(isCurve);
        var diagnostics = answer.charts.filter(function (c) { return !isCurve(c); });
        var box = $("curves");
        if (!curves.length) {
          if (!Object.keys(curvesDrawn).length) { clear(box).appendChild(el("p", { "class": "meta", text: "no metrics recorded yet" })); }
        } else {
          if (!Object.keys(curvesDrawn).length) { clear(box); }
          drawCharts(box, curves, curvesDrawn);
        }
        drawCharts($("diagnostics"), diagnostics, diagnosticsDrawn);
        window.nnexpEpochs = epochs;
      });
    }

    function poll() {
      if (status !== "running" && status !== null) { return Promise.resolve(); }
      return getJSON("/api/runs/" + encodeURIComponent(id) + "/metrics?since=" + epochs).then(function (m) {
        var changed = m.status !== status;
        if (m.total !== epochs) { return loadCharts().then(function () { if (changed) { return loadRun(); } }); }
        if (changed) { return Promise.all([loadRun(), loadCharts()]); }
      });
    }

    Promise.all([loadRun(), loadCharts()]).catch(showError).then(function () { window.nnexpReady = performance.now(); });
    every(1000, poll);
  }

  // ------------------------------------------------------------------ compare

  function comparePage() {
    var params = new URLSearchParams(location.search);
    var drawn = {};
    $("agg").value = params.get("agg") || "final";
    $("group").value = params.get("group") || "";

    function load() {
      var q = new URLSearchParams(params);
      return getJSON("/api/compare?" + q.toString()).then(function (c) {
        showError(null);
        var what = c.runs.length + " run" + (c.runs.length === 1 ? "" : "s") + "; sorted by " + c.metric.replace(/^metric\./, "") +
          " (" + c.goal + ")" + (c.grouped ? "; grouped over seeds: mean, std, 95% CI of the mean, n" : "; one row per run");
        if (c.varied.length) { what += "; differing: " + c.varied.join(", "); }
        $("what").textContent = what;
        var tests = clear($("tests"));
        c.test_lines.forEach(function (line) { tests.appendChild(el("li", { text: line })); });
        drawTables($("tables"), c.tables);
        drawCharts($("charts"), c.charts, drawn);
        window.nnexpReady = performance.now();
      }).catch(function (error) { showError(error); $("what").textContent = ""; clear($("tests")); });
    }

    ["agg", "group"].forEach(function (k) {
      $(k).addEventListener("change", function () {
        if ($(k).value) { params.set(k, $(k).value); } else { params.delete(k); }
        keepInAddress("?" + params.toString());
        load();
      });
    });
    $("options").addEventListener("submit", function (e) { e.preventDefault(); });
    load();
  }

  // ------------------------------------------------------------------ sweeps

  function sweepsPage() {
    var columns = ["sweep", "name", "status", "method", "trials", "done", "failed", "best", "updated"];
    var head = document.querySelector("#sweeps thead tr");
    columns.forEach(function (c) { head.appendChild(el("th", { scope: "col", text: c })); });
    function load() {
      return getJSON("/api/sweeps").then(function (states) {
        showError(null);
        var body = clear(document.querySelector("#sweeps tbody"));
        states.slice().reverse().forEach(function (s) {
          var counts = s.counts || {}, best = s.best || {};
          body.appendChild(el("tr", {}, [
            el("td", {}, [el("a", { href: sweepHref(s.id), text: s.id })]), el("td", { text: s.name || "-" }),
            el("td", {}, [badge(s.status)]), el("td", { text: s.method || "-" }),
            el("td", { "class": "num", text: number(s.trials) }),
            el("td", { "class": "num", text: number((counts.completed || 0) + (counts.pruned || 0)) }),
            el("td", { "class": "num", text: number(counts.failed || 0) }),
            el("td", { "class": "num", text: isNumber(best.value) ? valueText(s.metric || "", best.value) : "-" }),
            el("td", { text: s.updated || "-" })]));
        });
        $("count").textContent = states.length + " sweep" + (states.length === 1 ? "" : "s");
        window.nnexpReady = performance.now();
      }).catch(showError);
    }
    load();
    every(5000, load);
  }

  function sweepPage() {
    var id = $("main").getAttribute("data-sweep");
    var drawn = {}, running = true;
    var trialColumns = ["trial", "run", "parameters", "seed", "status", "epochs", "metric", "best so far"];
    var head = document.querySelector("#trials thead tr");
    trialColumns.forEach(function (c) { head.appendChild(el("th", { scope: "col", text: c })); });
    $("compare-link").setAttribute("href", compareHref("sweep=" + encodeURIComponent(id)));

    function load() {
      return getJSON("/api/sweeps/" + encodeURIComponent(id)).then(function (s) {
        showError(null);
        var state = s.sweep, counts = state.counts || {};
        running = state.status === "running";
        $("title").textContent = state.name ? String(state.name) : String(state.id);
        document.title = "Sweep " + (state.name || state.id) + " · nnexp";
        setBadge($("status"), state.status);
        $("live").hidden = !running;
        var done = (counts.completed || 0) + (counts.pruned || 0);
        var best = state.best && isNumber(state.best.value) ? "; best " + s.metric + " " + valueText(s.metric, state.best.value) +
          " (trial " + state.best.trial + ")" : "";
        $("facts").textContent = (state.method || "?") + " search, " + done + " of " + (state.trials || s.trials.length) +
          " trials done" + (counts.failed ? ", " + counts.failed + " failed" : "") + "; " + s.metric + " (" + s.goal + ")" + best +
          (state.updated ? "; updated " + state.updated : "");
        var body = clear(document.querySelector("#trials tbody"));
        s.trials.forEach(function (t) {
          var paramsText = t.params && typeof t.params === "object"
            ? Object.keys(t.params).map(function (k) { return k + "=" + valueText(k, t.params[k]); }).join(", ") : "-";
          body.appendChild(el("tr", { "data-status": t.status }, [
            el("td", { "class": "num", text: present(t.index) ? String(t.index) : "-" }),
            el("td", {}, [t.exists ? el("a", { href: runHref(t.run), text: t.run })
                                   : document.createTextNode(String(t.run || "-"))]),
            el("td", { text: paramsText }),
            el("td", { "class": "num", text: present(t.seed) ? String(t.seed) : "-" }),
            el("td", {}, [badge(t.status)]),
            el("td", { "class": "num", text: t.exists ? epochsText(t.epochs_completed, t.epochs_planned) : "-" }),
            el("td", { "class": "num", text: valueText(s.metric, t.value) }),
            el("td", { "class": "num", text: valueText(s.metric, t.best_so_far) })]));
        });
        if (!s.charts.length && !Object.keys(drawn).length) {
          clear($("charts")).appendChild(el("p", { "class": "meta", text: "no trial has a value yet" }));
        } else {
          if (!Object.keys(drawn).length) { clear($("charts")); }
          drawCharts($("charts"), s.charts, drawn);
        }
        drawTables($("tables"), s.tables);
        window.nnexpReady = performance.now();
      }).catch(showError);
    }
    load();
    every(2000, function () { return running ? load() : null; });
  }

  var pages = { runs: runsPage, run: runPage, compare: comparePage, sweeps: sweepsPage, sweep: sweepPage };
  var page = pages[document.body.getAttribute("data-page")];
  if (page) { page(); }
})();
