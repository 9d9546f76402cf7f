/* Pratai console: the little behaviour the pages need beyond htmx, bound by data attributes
   (the CSP allows no inline script). Runs on the first load and on every piece htmx swaps in. */
(function () {
  "use strict";
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

  /* <div data-series='{"x": [unix seconds...], "ys": [{"label": "calls", "values": [...]}]}'>:
     a uPlot chart; with class "spark", a bare sparkline. "integer": true puts whole numbers
     (counts) on the y axis; a null value is a gap. */
  function chart(el) {
    if (el.dataset.drawn) return;
    var data = JSON.parse(el.dataset.series);
    var spark = el.classList.contains("spark");
    var series = [{}].concat(data.ys.map(function (y, i) {
      var color = COLORS[i % COLORS.length];
      /* a value between gaps (null: nothing to measure) draws no line: show it as a point */
      var gaps = y.values.indexOf(null) >= 0;
      return { label: y.label, stroke: color, width: spark ? 1 : 1.5,
               fill: spark ? color + "22" : undefined,
               points: { show: !spark && (data.x.length < 40 || gaps) } };
    }));
    /* "integer": true for counts: no 0.5 calls on the axis */
    var yAxis = data.integer ? { size: 56, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6] } : { size: 56 };
    var opts = {
      width: el.clientWidth || (spark ? 120 : 600),
      height: parseInt(el.dataset.height || (spark ? "28" : "180"), 10),
      series: series,
      legend: { show: !spark },
      cursor: { show: !spark },
      scales: { x: { time: data.time !== false } },
      axes: spark ? [{ show: false }, { show: false }] : [{}, yAxis]
    };
    new uPlot(opts, [data.x].concat(data.ys.map(function (y) { return y.values; })), el);
    el.dataset.drawn = "1";
    el.dataset.points = String(data.x.length);
  }

  /* <pre data-sse="/ui/.../stream">: lines appended as the server sends them. An event named
     "end" closes the stream; "status" events update [data-sse-status] nearby. */
  function stream(el) {
    if (el.dataset.streaming) return;
    el.dataset.streaming = "1";
    var source = new EventSource(el.dataset.sse);
    var status = document.querySelector(el.dataset.sseStatus || "#stream-status");
    source.onmessage = function (event) {
      var stick = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
      el.appendChild(document.createTextNode(event.data + "\n"));
      if (stick) el.scrollTop = el.scrollHeight;
    };
    source.addEventListener("status", function (event) { if (status) status.textContent = event.data; });
    source.addEventListener("end", function () {
      source.close();
      if (status) status.textContent = "ended";
    });
    source.onerror = function () { if (status && source.readyState === 2) status.textContent = "disconnected"; };
  }

  function bind(root) {
    root.querySelectorAll("[data-series]").forEach(chart);
    root.querySelectorAll("[data-sse]").forEach(stream);
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        var text = button.dataset.copy;
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, done);
        } else {  /* http on another host: no clipboard API; select the text instead */
          var field = document.createElement("textarea");
          field.value = text;
          document.body.appendChild(field);
          field.select();
          document.execCommand("copy");
          field.remove();
          done();
        }
      });
    });
    /* <select data-fill="#payload"> with data-payload on each option: a saved payload fills the box */
    root.querySelectorAll("select[data-fill]").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      select.addEventListener("change", function () {
        var option = select.options[select.selectedIndex];
        var target = document.querySelector(select.dataset.fill);
        if (target && option && option.dataset.payload !== undefined) target.value = option.dataset.payload;
      });
    });
    /* [data-confirm]: ask before a destructive form is sent */
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  /* An upload's progress: a <progress> inside the form htmx sends. */
  document.addEventListener("htmx:xhr:progress", function (event) {
    var bar = event.target.querySelector && event.target.querySelector("progress");
    if (bar && event.detail.lengthComputable) {
      bar.hidden = false;
      bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
    }
  });
  /* hx-confirm needs no eval; it is htmx's own. The flash area clears on the next request. */
  document.addEventListener("htmx:beforeRequest", function () {
    var flash = document.getElementById("flash");
    if (flash) flash.textContent = "";
  });

  htmx.onLoad(bind);
})();
