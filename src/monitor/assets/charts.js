// Small hand-written SVG charts: time series (lines or stacked areas) and
// a bar chart. No library: the monitor's page loads nothing from outside.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 420, H = 150, L = 46, R = 8, T = 8, B = 20;
  const PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096"];

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // 1234567 -> "1.2M"
  function si(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    if (a >= 10 || v === 0) return Math.round(v).toString();
    return v.toFixed(1);
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function frame(svg, ymax, fmt, t0, t1) {
    svg.textContent = "";
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const g = el("g", { class: "axis" });
    for (let i = 0; i <= 4; i++) {
      const y = T + (H - T - B) * (1 - i / 4);
      g.appendChild(el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
      g.appendChild(el("text", { x: L - 4, y: y + 3, "text-anchor": "end" }, fmt(ymax * i / 4)));
    }
    const span = Math.max(1, (t1 - t0) / 60000);
    g.appendChild(el("text", { x: L, y: H - 5 }, "-" + Math.round(span) + " min"));
    g.appendChild(el("text", { x: W - R, y: H - 5, "text-anchor": "end" }, "now"));
    svg.appendChild(g);
  }

  // series: [{name, values: [number], color?}], ts: [unix ms].
  // opts: {stacked, percent, fmt}
  function timeSeries(svg, ts, series, opts) {
    opts = opts || {};
    const fmt = opts.fmt || (opts.percent ? (v) => Math.round(v) + "%" : si);
    const n = ts.length;
    const t1 = n ? ts[n - 1] : Date.now();
    const t0 = Math.min(n ? ts[0] : t1, t1 - 60000);
    const x = (t) => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
    // Stacked tops per point.
    const tops = series.map(() => new Array(n).fill(0));
    const base = new Array(n).fill(0);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      if (opts.percent) for (const s of series) sum += s.values[i] || 0;
      let acc = 0;
      series.forEach((s, k) => {
        let v = s.values[i] || 0;
        if (opts.percent) v = sum > 0 ? 100 * v / sum : 0;
        acc = opts.stacked || opts.percent ? acc + v : v;
        tops[k][i] = acc;
      });
    }
    let ymax = 0;
    for (const t of tops) for (const v of t) ymax = Math.max(ymax, v);
    ymax = opts.percent ? 100 : niceMax(ymax);
    frame(svg, ymax, fmt, t0, t1);
    const y = (v) => T + (H - T - B) * (1 - v / ymax);
    series.forEach((s, k) => {
      const color = s.color || PALETTE[k % PALETTE.length];
      if (n === 0) return;
      const top = tops[k].map((v, i) => `${x(ts[i]).toFixed(1)},${y(v).toFixed(1)}`);
      if (opts.stacked || opts.percent) {
        const below = k === 0 ? base : tops[k - 1];
        const bot = below.map((v, i) => `${x(ts[i]).toFixed(1)},${y(v).toFixed(1)}`).reverse();
        svg.appendChild(el("polygon", { points: top.concat(bot).join(" "), fill: color, "fill-opacity": 0.55, stroke: color, "stroke-width": 1, "data-series": s.name }));
      } else {
        const line = el("polyline", { points: top.join(" "), fill: "none", stroke: color, "stroke-width": 1.6, "data-series": s.name });
        // A dashed line stays visible on top of an equal one (NAT in = out).
        if (s.dashed) line.setAttribute("stroke-dasharray", "5 3");
        svg.appendChild(line);
      }
    });
  }

  // Stacked 100% bars over time: spans [[t0, t1]], series [{name, values}]
  // (one value per span). For shares: each bar is one span's proportions.
  function shareBars(svg, spans, series) {
    const n = spans.length;
    const t1 = n ? spans[n - 1][1] : Date.now();
    const t0 = Math.min(n ? spans[0][0] : t1, t1 - 60000);
    frame(svg, 100, (v) => Math.round(v) + "%", t0, t1);
    const x = (t) => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
    const y = (v) => T + (H - T - B) * (1 - v / 100);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (const s of series) sum += s.values[i] || 0;
      if (!sum) continue;
      const x0 = x(spans[i][0]), w = Math.max(2, x(spans[i][1]) - x0 - 1);
      let acc = 0;
      series.forEach((s, k) => {
        const v = 100 * (s.values[i] || 0) / sum;
        if (v > 0) {
          const r = el("rect", { x: x0.toFixed(1), y: y(acc + v).toFixed(1), width: w.toFixed(1), height: (y(acc) - y(acc + v)).toFixed(1), fill: s.color || PALETTE[k % PALETTE.length], "fill-opacity": 0.8, "data-series": s.name });
          r.appendChild(el("title", {}, `${s.name}: ${v.toFixed(1)}% (${s.values[i]} of ${sum})`));
          svg.appendChild(r);
        }
        acc += v;
      });
    }
  }

  // bars: [{label, value}]
  function bars(svg, items, opts) {
    opts = opts || {};
    const fmt = opts.fmt || si;
    svg.textContent = "";
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const ymax = niceMax(Math.max(1, ...items.map((b) => b.value)));
    const g = el("g", { class: "axis" });
    for (let i = 0; i <= 4; i++) {
      const yy = T + (H - T - B) * (1 - i / 4);
      g.appendChild(el("line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "grid" }));
      g.appendChild(el("text", { x: L - 4, y: yy + 3, "text-anchor": "end" }, fmt(ymax * i / 4)));
    }
    svg.appendChild(g);
    const n = Math.max(1, items.length);
    const bw = (W - L - R) / n;
    items.forEach((b, i) => {
      const h = (H - T - B) * b.value / ymax;
      const r = el("rect", { x: L + i * bw + 1, y: H - B - h, width: Math.max(1, bw - 2), height: h, fill: PALETTE[0] });
      r.appendChild(el("title", {}, `${b.label}: ${b.value}`));
      svg.appendChild(r);
      if (n <= 8 || i % 2 === 0) svg.appendChild(el("text", { x: L + i * bw + bw / 2, y: H - 6, "text-anchor": "middle", class: "tick" }, b.label));
    });
  }

  function svg(cls) {
    return el("svg", { class: cls || "chart", preserveAspectRatio: "none" });
  }

  return { timeSeries, shareBars, bars, svg, si, PALETTE };
})();
