// keel's report charts: drawn in the page from the data embedded beside this script (no
// network, no library). Hover for values, drag across a chart to zoom every time chart to
// that window, double-click or "reset zoom" to see the whole run again.
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push(String(e.message || e));
    document.body.setAttribute("data-errors", String(errors.length));
  });
  var NS = "http://www.w3.org/2000/svg";
  var W = 1000, L = 66, R = 14, T = 10, B = 26;
  var D = JSON.parse(document.getElementById("keel-data").textContent);
  var charts = D.charts || [];
  var win = null; // the zoomed time window [x0, x1], shared by every time chart
  var views = {};

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function pad2(n) { return (n < 10 ? "0" : "") + n; }
  function date(t, withTime) {
    var d = new Date(t * 1000);
    var s = d.getUTCFullYear() + "-" + pad2(d.getUTCMonth() + 1) + "-" + pad2(d.getUTCDate());
    return withTime ? s + " " + pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes()) + " UTC" : s;
  }
  function num(v, unit) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    if (unit === "%") return (v * 100).toFixed(Math.abs(v) < 0.1 ? 2 : 1) + "%";
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + "B";
    if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return Math.round(v).toLocaleString("en-US");
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(3);
    if (a === 0) return "0";
    return v.toPrecision(3);
  }
  // a tick's label with as many decimals as the spacing of the ticks needs
  function tickLabel(v, unit, step) {
    if (Math.abs(v) < 1e-12) v = 0; // no "-0"
    if (unit === "%") {
      var d = step > 0 ? Math.max(0, Math.ceil(-Math.log10(step * 100) - 1e-9)) : 1;
      return (v * 100).toFixed(Math.min(d, 6)) + "%";
    }
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6) + "M";
    if (a >= 1e3) return (v / 1e3) + "k";
    return String(+v.toPrecision(4));
  }
  function linTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    var raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return s >= raw; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  // readable log ticks: 1-2-5 (or only powers of ten across many decades)
  function logTicks(lo, hi) {
    var k0 = Math.floor(Math.log10(lo)), k1 = Math.ceil(Math.log10(hi));
    var mult = k1 - k0 > 4 ? [1] : k1 - k0 > 2 ? [1, 3] : [1, 2, 5];
    var out = [];
    for (var k = k0; k <= k1; k++)
      mult.forEach(function (m) { var v = m * Math.pow(10, k); if (v >= lo && v <= hi) out.push(+v.toPrecision(6)); });
    return out.length >= 2 ? out : linTicks(lo, hi, 5);
  }
  var STEPS = [600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400];
  function timeTicks(x0, x1) {
    var span = x1 - x0, out = [], i, t;
    for (i = 0; i < STEPS.length; i++) {
      if (span / STEPS[i] <= 8) {
        for (t = Math.ceil(x0 / STEPS[i]) * STEPS[i]; t <= x1; t += STEPS[i]) out.push(t);
        return { ticks: out, withTime: STEPS[i] < 86400, month: false };
      }
    }
    var months = [1, 3, 6, 12, 24, 60].find(function (m) { return span / (m * 30.44 * 86400) <= 8; }) || 120;
    var d = new Date(x0 * 1000), y = d.getUTCFullYear(), m = d.getUTCMonth() + 1;
    m = Math.ceil(m / months) * months;
    for (;;) {
      while (m >= 12) { m -= 12; y += 1; }
      t = Date.UTC(y, m, 1) / 1000;
      if (t > x1) break;
      if (t >= x0) out.push(t);
      m += months;
    }
    return { ticks: out, withTime: false, month: true };
  }
  function lower(xs, v) { // first index with xs[i] >= v
    var a = 0, b = xs.length;
    while (a < b) { var m = (a + b) >> 1; if (xs[m] < v) a = m + 1; else b = m; }
    return a;
  }
  function values(c, s) { return D.cols[s.col]; }
  // the smallest and largest value a chart holds over its whole run (extremes included)
  function extent(c, i0, i1) {
    var lo = Infinity, hi = -Infinity;
    function see(v) { if (v !== null && isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
    c.series.forEach(function (s) {
      [s.col, s.lo, s.hi].forEach(function (name) {
        if (!name) return;
        var ys = D.cols[name];
        for (var i = i0; i < i1; i++) see(ys[i]);
      });
    });
    return [lo, hi];
  }

  function draw(c) {
    var v = views[c.id];
    var box = v.box, xs = D.cols[c.x], n = xs.length;
    var H = c.height || 240;
    box.svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    while (box.svg.firstChild) box.svg.removeChild(box.svg.firstChild);
    if (!n) { el("text", { x: L, y: 40, "class": "empty" }, box.svg).textContent = "no data"; return; }
    var timeAxis = c.x !== "bin";
    var x0 = xs[0], x1 = xs[n - 1];
    if (timeAxis && win) { x0 = Math.max(x0, win[0]); x1 = Math.min(x1, win[1]); }
    if (c.kind === "bars") { var half = (xs[1] - xs[0]) / 2 || 0.5; x0 -= half; x1 += half; }
    if (!(x1 > x0)) x1 = x0 + 1;
    var i0 = Math.max(0, lower(xs, x0) - 1), i1 = Math.min(n, lower(xs, x1) + 1);
    var e = extent(c, i0, i1), y0 = e[0], y1 = e[1];
    (c.refs || []).forEach(function (r) { y0 = Math.min(y0, r.y); y1 = Math.max(y1, r.y); });
    if (c.kind === "bars") y0 = 0;
    if (c.floor !== undefined && c.floor !== null) y0 = Math.max(y0, c.floor);
    if (!isFinite(y0) || !isFinite(y1)) { y0 = 0; y1 = 1; }
    var log = c.log === true || (c.log === "auto" && v.full[0] > 0 && v.full[1] / v.full[0] > 20);
    if (log && !(y0 > 0)) log = false;
    var f = log ? Math.log10 : function (a) { return a; };
    var fy0 = f(y0), fy1 = f(y1);
    if (fy1 - fy0 < 1e-12) {
      // a flat series: a little room around it (1 bp for a fraction, 1% of the value otherwise)
      var room = log ? 0.01 : c.unit === "%" ? 0.0001 : Math.max(Math.abs(fy0) * 0.01, 1e-9);
      fy0 -= room; fy1 += room;
    }
    var padY = (fy1 - fy0) * 0.05; fy0 -= c.kind === "bars" ? 0 : padY; fy1 += padY;
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) {
      var fy = f(y);
      if (fy < fy0) fy = fy0; if (fy > fy1) fy = fy1;
      return T + (1 - (fy - fy0) / (fy1 - fy0)) * (H - T - B);
    };
    v.sx = sx; v.x0 = x0; v.x1 = x1; v.H = H; v.i0 = i0; v.i1 = i1;
    var g = box.svg;
    var yt = log ? logTicks(Math.pow(10, fy0), Math.pow(10, fy1)) : linTicks(fy0, fy1, 5);
    yt.forEach(function (yv) {
      var y = sy(yv).toFixed(1);
      el("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "grid" }, g);
      el("text", { x: L - 6, y: +y + 4, "class": "ylab" }, g).textContent = tickLabel(yv, c.unit, log ? 0 : yt[1] - yt[0]);
    });
    if (timeAxis) {
      var tt = timeTicks(x0, x1);
      tt.ticks.forEach(function (t) {
        var x = sx(t).toFixed(1);
        el("line", { x1: x, x2: x, y1: T, y2: H - B, "class": "grid" }, g);
        var lab = tt.month ? date(t).slice(0, 7) : tt.withTime ? date(t, true).slice(5, 16) : date(t).slice(0, 10);
        // labels near an edge are anchored inside the chart, not cut off
        var anchor = +x > W - R - 32 ? "end" : +x < L + 32 ? "start" : "middle";
        el("text", { x: x, y: H - B + 16, "class": "xlab", "text-anchor": anchor }, g).textContent = lab;
      });
    } else {
      var xt = linTicks(x0, x1, 8);
      xt.forEach(function (t) {
        var x = sx(t).toFixed(1);
        el("text", { x: x, y: H - B + 16, "class": "xlab", "text-anchor": "middle" }, g).textContent = tickLabel(t, c.xunit, xt[1] - xt[0]);
      });
    }
    if (c.marks && D.marks) {
      D.marks.forEach(function (m) {
        if (m.t < x0 || m.t > x1) return;
        var x = sx(m.t).toFixed(1), major = m.k === "ripcord" || m.k === "liquidation" || m.k === "close";
        el("line", { x1: x, x2: x, y1: major ? T : H - B - 8, y2: H - B, "class": "mark m-" + m.k }, g);
      });
    }
    (c.refs || []).forEach(function (r) {
      var y = sy(r.y).toFixed(1);
      el("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: r.color, "class": "ref" }, g);
      var t = el("text", { x: W - R - 4, y: y - 3, fill: r.color, "class": "reflab" }, g);
      t.textContent = r.label;
    });
    // series are clipped to the plot area (a zoomed window draws one point beyond each edge)
    var clipId = "clip-" + c.id;
    var defs = el("defs", {}, g), cp = el("clipPath", { id: clipId }, defs);
    el("rect", { x: L, y: T - 2, width: W - L - R, height: H - B - T + 4 }, cp);
    var plot = el("g", { "clip-path": "url(#" + clipId + ")" }, g);
    c.series.forEach(function (s) {
      var ys = D.cols[s.col];
      var g = plot;
      if (c.kind === "bars") {
        var bw = Math.max(1, (sx(xs[1] || xs[0] + 1) - sx(xs[0])) * 0.9);
        for (var i = i0; i < i1; i++) {
          if (!ys[i]) continue;
          el("rect", { x: (sx(xs[i]) - bw / 2).toFixed(1), y: sy(ys[i]).toFixed(1), width: bw.toFixed(1),
            height: Math.max(0, sy(0) - sy(ys[i])).toFixed(1), fill: (D.cols[s.colors] || [])[i] || s.color }, g);
        }
        return;
      }
      if (s.lo && s.hi) { // the band between each row's low and high: every extreme shows
        var lo = D.cols[s.lo], hi = D.cols[s.hi], up = "", down = "", k;
        for (k = i0; k < i1; k++) if (hi[k] !== null && lo[k] !== null)
          up += (up ? " L" : "M") + sx(xs[k]).toFixed(1) + "," + sy(hi[k]).toFixed(1);
        for (k = i1 - 1; k >= i0; k--) if (hi[k] !== null && lo[k] !== null)
          down += " L" + sx(xs[k]).toFixed(1) + "," + sy(lo[k]).toFixed(1);
        if (up) el("path", { d: up + down + " Z", fill: s.color, stroke: s.color, "class": "band" }, g);
      }
      var d = "", pen = false;
      for (var j = i0; j < i1; j++) {
        var y = ys[j];
        if (y === null || !isFinite(y) || (log && y <= 0)) { pen = false; continue; }
        d += (pen ? " L" : "M") + sx(xs[j]).toFixed(1) + "," + sy(y).toFixed(1);
        pen = true;
      }
      var a = { d: d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.4 };
      if (s.dash) a["stroke-dasharray"] = s.dash;
      el("path", a, g);
    });
    v.cross = el("line", { x1: -10, x2: -10, y1: T, y2: H - B, "class": "cross" }, g);
    v.sel = el("rect", { x: 0, y: T, width: 0, height: H - B - T, "class": "sel" }, g);
    v.overlay = el("rect", { x: L, y: T, width: W - L - R, height: H - B - T, "class": "overlay" }, g);
    v.overlay.setAttribute("data-chart", c.id);
    bind(c, v);
  }

  function dataX(v, ev) {
    var r = v.box.svg.getBoundingClientRect();
    var px = (ev.clientX - r.left) / r.width * W;
    return { px: px, x: v.x0 + (px - L) / (W - L - R) * (v.x1 - v.x0) };
  }

  function tooltip(c, v, ev) {
    var xs = D.cols[c.x], p = dataX(v, ev);
    var i = lower(xs, p.x);
    if (i >= xs.length) i = xs.length - 1;
    if (i > 0 && Math.abs(xs[i - 1] - p.x) < Math.abs(xs[i] - p.x)) i--;
    var x = v.sx(xs[i]);
    v.cross.setAttribute("x1", x); v.cross.setAttribute("x2", x);
    var head = c.x === "bin" ? (c.xlabel || "") + " " + tickLabel(xs[i], c.xunit, (xs[1] - xs[0]) / 10) : date(xs[i], c.x === "t" && D.step < 86400);
    var rows = ["<b>" + head + "</b>"];
    c.series.forEach(function (s) {
      var val = D.cols[s.col][i];
      var line = '<i class="sw" style="background:' + s.color + '"></i>' + s.name + ": " + num(val, c.unit);
      if (s.lo && s.hi && D.cols[s.lo][i] !== null && D.cols[s.hi][i] !== null && D.cols[s.lo][i] !== D.cols[s.hi][i])
        line += ' <span class="rng">(' + num(D.cols[s.lo][i], c.unit) + " – " + num(D.cols[s.hi][i], c.unit) + ")</span>";
      rows.push(line);
    });
    if (c.marks && D.marks) {
      var near = D.marks.filter(function (m) { return Math.abs(v.sx(m.t) - p.px) < 4 && m.t >= v.x0 && m.t <= v.x1; });
      near.slice(0, 4).forEach(function (m) { rows.push("<span class=\"ev m-" + m.k + "\">" + m.k + " " + date(m.t, true) + "</span>"); });
      if (near.length > 4) rows.push("… " + (near.length - 4) + " more here");
    }
    var tip = v.box.tip;
    tip.innerHTML = rows.join("<br>");
    tip.style.display = "block";
    var r = v.box.wrap.getBoundingClientRect();
    var left = ev.clientX - r.left + 14;
    if (left + tip.offsetWidth > r.width) left = ev.clientX - r.left - tip.offsetWidth - 14;
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, ev.clientY - r.top + 10) + "px";
  }

  function bind(c, v) {
    var o = v.overlay, drag = null;
    o.addEventListener("mousemove", function (ev) {
      tooltip(c, v, ev);
      if (drag !== null) {
        var p = dataX(v, ev).px, a = Math.max(L, Math.min(drag, p)), b = Math.min(W - R, Math.max(drag, p));
        v.sel.setAttribute("x", a); v.sel.setAttribute("width", b - a);
      }
    });
    o.addEventListener("mouseleave", function () {
      v.box.tip.style.display = "none"; v.cross.setAttribute("x1", -10); v.cross.setAttribute("x2", -10);
      drag = null; v.sel.setAttribute("width", 0);
    });
    if (c.x === "bin") return;
    o.addEventListener("mousedown", function (ev) { drag = dataX(v, ev).px; ev.preventDefault(); });
    o.addEventListener("mouseup", function (ev) {
      if (drag === null) return;
      var a = drag, b = dataX(v, ev).px; drag = null; v.sel.setAttribute("width", 0);
      if (Math.abs(b - a) < 5) return;
      var xa = v.x0 + (Math.min(a, b) - L) / (W - L - R) * (v.x1 - v.x0);
      var xb = v.x0 + (Math.max(a, b) - L) / (W - L - R) * (v.x1 - v.x0);
      zoom(xa, xb);
    });
    o.addEventListener("dblclick", function () { zoom(null); });
  }

  function zoom(a, b) {
    win = a === null ? null : [a, b];
    charts.forEach(function (c) { if (c.x !== "bin") draw(c); });
    document.querySelectorAll(".zoominfo").forEach(function (z) {
      z.textContent = win ? "showing " + date(win[0], true) + " to " + date(win[1], true) : "";
    });
    document.querySelectorAll(".reset").forEach(function (btn) { btn.disabled = !win; });
  }

  charts.forEach(function (c) {
    var host = document.getElementById("chart-" + c.id);
    if (!host) return;
    var wrap = document.createElement("div"); wrap.className = "cwrap";
    var head = document.createElement("div"); head.className = "chead";
    var title = document.createElement("span"); title.className = "ctitle"; title.textContent = c.title;
    head.appendChild(title);
    c.series.forEach(function (s) {
      var k = document.createElement("span"); k.className = "key";
      k.innerHTML = '<i class="sw" style="background:' + s.color + '"></i>';
      k.appendChild(document.createTextNode(s.name + (s.lo ? " (band: low–high between rows)" : "")));
      head.appendChild(k);
    });
    if (c.x !== "bin") {
      var btn = document.createElement("button"); btn.className = "reset"; btn.textContent = "reset zoom"; btn.disabled = true;
      btn.addEventListener("click", function () { zoom(null); });
      head.appendChild(btn);
    }
    var svg = el("svg", { "class": "chart", role: "img", "aria-label": c.title });
    var tip = document.createElement("div"); tip.className = "tip";
    wrap.appendChild(head); wrap.appendChild(svg); wrap.appendChild(tip);
    host.appendChild(wrap);
    var xs = D.cols[c.x] || [];
    views[c.id] = { box: { wrap: wrap, svg: svg, tip: tip }, full: extent(c, 0, xs.length) };
    draw(c);
  });

  // paged, filtered table of routine calls
  var ev = D.calls;
  if (ev && document.getElementById("calls")) {
    var page = 0, per = 100, kind = "", body = document.querySelector("#calls tbody");
    var sel = document.getElementById("calls-kind"), info = document.getElementById("calls-page");
    var kinds = {};
    ev.rows.forEach(function (r) { kinds[r[2]] = (kinds[r[2]] || 0) + 1; });
    Object.keys(kinds).sort().forEach(function (k) {
      var o = document.createElement("option"); o.value = k; o.textContent = k + " (" + kinds[k] + ")"; sel.appendChild(o);
    });
    var show = function () {
      var rows = kind ? ev.rows.filter(function (r) { return r[2] === kind; }) : ev.rows;
      var pages = Math.max(1, Math.ceil(rows.length / per));
      page = Math.min(page, pages - 1);
      body.innerHTML = "";
      rows.slice(page * per, page * per + per).forEach(function (r) {
        var tr = document.createElement("tr");
        tr.innerHTML = '<td style="white-space:nowrap">' + date(r[0], true) + "</td><td>" + r[1] + "</td><td>" + r[2] + "</td><td>" + r[3] + "</td>" +
          r.slice(4, 11).map(function (x, j) { return '<td class="num">' + (j < 4 ? num(x) : x === null ? "–" : (Math.round(x) || 0).toLocaleString("en-US")) + "</td>"; }).join("") +
          "<td>" + (r[11] || "").replace(/</g, "&lt;") + "</td>";
        body.appendChild(tr);
      });
      info.textContent = "page " + (page + 1) + " of " + pages + " (" + rows.length + " calls)";
    };
    sel.addEventListener("change", function () { kind = sel.value; page = 0; show(); });
    document.getElementById("calls-prev").addEventListener("click", function () { page = Math.max(0, page - 1); show(); });
    document.getElementById("calls-next").addEventListener("click", function () { page += 1; show(); });
    show();
  }

  // any element with data-tip (heatmap cells, points) shows it on hover
  var ftip = document.createElement("div");
  ftip.className = "tip"; ftip.id = "hover-tip"; ftip.style.position = "fixed";
  document.body.appendChild(ftip);
  document.addEventListener("mouseover", function (ev) {
    var t = ev.target && ev.target.getAttribute && ev.target.getAttribute("data-tip");
    if (!t) { ftip.style.display = "none"; return; }
    ftip.textContent = t; ftip.style.display = "block";
    ftip.style.left = Math.min(ev.clientX + 12, window.innerWidth - ftip.offsetWidth - 4) + "px";
    ftip.style.top = (ev.clientY + 12) + "px";
  });

  window.keel = {
    data: D,
    errors: errors,
    // [lowest, highest] a chart holds over the whole run, band included
    extent: function (id) { var v = views[id]; return v ? v.full : null; },
    zoom: zoom
  };
  document.body.setAttribute("data-ready", "1");
})();
