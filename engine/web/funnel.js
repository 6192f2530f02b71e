// The funnel plot of the reporting page (report.js calls `ValtavaFunnel`): for a dataset
// whose measures include `osuus` (a share, %), `n` (its count) and `odotettu` (the national
// share, %) and which has an area dimension — the shape of `valvonta_poikkeamat` — an inline
// SVG of every area's share against its count, the national value as a horizontal line and
// its 95 % and 99.8 % limits p0 ± z·√(p0(1 − p0)/n) (z 1.96 and 3.09, clamped to 0–100 %)
// as curves over the range of n, computed here from `odotettu`. One plot per choice of the
// other dimensions (e.g. the indicator and the source period): a select for each.
//
// Each area is a point labelled by its name, classed `poikkeama` (|z| > 3.09), `tarkkailu`
// (|z| > 1.96) or `normaali`, told apart by shape as well as by colour (triangle, square,
// circle) and named in the legend and the table. The class is the dataset's `luokka` when
// that is a dimension; the served API carries numeric measures only, so a text `luokka`
// measure is not served, and the class is then taken from the measure `z` (from `osuus`,
// `n` and `odotettu` when there is no `z`) with the line's thresholds. The SVG has a
// <title> and <desc>; a table lists every point (area, n, share, national share, z, class)
// for screen readers, printing and copying. Built with DOM calls, never markup.
// Loaded before report.js, which calls it once the page has data.
"use strict";

window.ValtavaFunnel = (function () {
  const SVG = "http://www.w3.org/2000/svg";
  const Z95 = 1.96;
  const Z998 = 3.09;
  const NEEDED = ["osuus", "n", "odotettu"];
  const CLASSES = ["poikkeama", "tarkkailu", "normaali"];
  const TOTALS = new Set(["SSS", "YHT"]);
  const LOCALE = { fi: "fi-FI", sv: "sv-FI", en: "en-GB" };

  const T = {
    fi: {
      heading: "Suppilokaavio", x: "Havaintojen määrä (n)", y: "Osuus (%)",
      national: "Koko maan arvo", lim95: "95 %:n rajat", lim998: "99,8 %:n rajat",
      intro: "Jokainen piste on alue: vaaka-akselilla havaintojen määrä, pystyakselilla osuus. Vaakaviiva on koko maan arvo; kaaret ovat rajat, joiden sisälle alueen osuus osuu sattumalta 95 %:n ja 99,8 %:n todennäköisyydellä.",
      poikkeama: "poikkeama (99,8 %:n rajojen ulkopuolella)", tarkkailu: "tarkkailu (95 %:n rajojen ulkopuolella)",
      normaali: "normaali (rajojen sisällä)", area: "Alue", share: "Osuus (%)", expected: "Koko maa (%)",
      cls: "Luokka", none: "Valinnalla ei ole julkaistuja pisteitä.",       desc: (n, p, t, v) => `${n} aluetta, joista ${p} poikkeaa ja ${t} on tarkkailussa; koko maan arvo ${v} %. Pisteet ovat myös taulukossa kaavion alla.`,
    },
    sv: {
      heading: "Trattdiagram", x: "Antal observationer (n)", y: "Andel (%)",
      national: "Värdet för hela landet", lim95: "95 %-gränser", lim998: "99,8 %-gränser",
      intro: "Varje punkt är ett område: antalet observationer på den vågräta axeln, andelen på den lodräta. Den vågräta linjen är värdet för hela landet; kurvorna är gränserna inom vilka ett områdes andel hamnar av slump med 95 % och 99,8 % sannolikhet.",
      poikkeama: "avvikelse (utanför 99,8 %-gränserna)", tarkkailu: "bevakning (utanför 95 %-gränserna)",
      normaali: "normal (inom gränserna)", area: "Område", share: "Andel (%)", expected: "Hela landet (%)",
      cls: "Klass", none: "Valet har inga publicerade punkter.",       desc: (n, p, t, v) => `${n} områden, av vilka ${p} avviker och ${t} är under bevakning; värdet för hela landet ${v} %. Punkterna finns också i tabellen under diagrammet.`,
    },
    en: {
      heading: "Funnel plot", x: "Number of observations (n)", y: "Share (%)",
      national: "National value", lim95: "95 % limits", lim998: "99.8 % limits",
      intro: "Each point is an area: its number of observations across, its share up. The horizontal line is the national value; the curves are the limits within which an area's share falls by chance with 95 % and 99.8 % probability.",
      poikkeama: "outlier (outside the 99.8 % limits)", tarkkailu: "watch (outside the 95 % limits)",
      normaali: "normal (within the limits)", area: "Area", share: "Share (%)", expected: "National (%)",
      cls: "Class", none: "No published points for this choice.",       desc: (n, p, t, v) => `${n} areas, of which ${p} are outliers and ${t} under watch; national value ${v} %. The points are also in the table below the plot.`,
    },
  };

  // The codes of a dimension (JSON-stat's index is an array or an object of positions).
  function codesOf(doc, d) {
    const idx = doc.dimension[d].category.index;
    return Array.isArray(idx) ? idx : Object.keys(idx);
  }

  // Whether the dataset is drawn as a funnel plot: it has an area dimension and the
  // measures `osuus`, `n` and `odotettu`.
  function applies(doc, r) {
    if (!r.geo || !r.metric) return false;
    const measures = codesOf(doc, r.metric);
    return NEEDED.every((m) => measures.includes(m));
  }

  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    e.append(...kids);
    return e;
  }

  function classOf(z) {
    if (z === null || !Number.isFinite(z)) return "normaali";
    const a = Math.abs(z);
    return a > Z998 ? "poikkeama" : a > Z95 ? "tarkkailu" : "normaali";
  }

  // Every area's point, over all choices of the other dimensions: the choice, the area,
  // its figures and class. Cells without a share or count (suppressed, missing) are left out.
  function allPoints(ctx) {
    const { doc, r } = ctx;
    const cell = ctx.cube(doc);
    const clsDim = doc.id.includes("luokka") ? "luokka" : null;
    const others = doc.id.filter((d) => d !== r.geo && d !== r.metric && d !== clsDim);
    const measures = codesOf(doc, r.metric);
    const points = [];
    const walk = (k, at) => {
      if (k < others.length) {
        for (const c of ctx.codes(doc, others[k])) walk(k + 1, { ...at, [others[k]]: c });
        return;
      }
      for (const area of ctx.codes(doc, r.geo)) {
        if (TOTALS.has(area)) continue;
        for (const cls of clsDim ? ctx.codes(doc, clsDim) : [null]) {
          const pos = { ...at, [r.geo]: area };
          if (clsDim) pos[clsDim] = cls;
          const get = (m) => {
            if (!measures.includes(m)) return null;
            const c = cell({ ...pos, [r.metric]: m });
            return c.status === "suppressed" || typeof c.value !== "number" ? null : c.value;
          };
          const [share, n, p0] = NEEDED.map(get);
          if (share === null || n === null || n <= 0) continue;
          let z = get("z");
          if (z === null && p0 !== null && p0 > 0 && p0 < 100) {
            const p = p0 / 100;
            z = (share / 100 - p) / Math.sqrt((p * (1 - p)) / n);
          }
          points.push({ at, area, share, n, p0, z, cls: cls && CLASSES.includes(cls) ? cls : classOf(z) });
        }
      }
    };
    walk(0, {});
    return { others, points, clsDim };
  }

  // Nice ticks over [lo, hi], about `count` of them.
  function ticks(lo, hi, count) {
    const raw = (hi - lo) / count || 1;
    const pow = 10 ** Math.floor(Math.log10(raw));
    const f = raw / pow;
    const step = pow * (f >= 7.5 ? 10 : f >= 3.5 ? 5 : f >= 1.5 ? 2 : 1);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
    return { step, out };
  }

  // The limit of national share `p0` (%) at count `n` for `z` standard errors (signed), %.
  function limit(p0, n, z) {
    const p = p0 / 100;
    return Math.min(100, Math.max(0, 100 * (p + z * Math.sqrt((p * (1 - p)) / n))));
  }

  function marker(cls, x, y) {
    if (cls === "poikkeama") return svg("path", { d: `M${x} ${y - 6}L${x + 6} ${y + 4.5}L${x - 6} ${y + 4.5}Z`, class: "mark" });
    if (cls === "tarkkailu") return svg("rect", { x: x - 4.5, y: y - 4.5, width: 9, height: 9, class: "mark" });
    return svg("circle", { cx: x, cy: y, r: 4.5, class: "mark" });
  }

  // The plot of `points` (one choice) with national share `p0`.
  // `title` names the plot for screen readers; `caption`, the choice alone, is drawn above it
  // (the page's heading says the rest, and a long title would run past the plot).
  function plot(points, p0, title, desc, tr, fmt, caption) {
    const W = 780, H = 460, L = 64, R = 160, TOP = 40, B = 56;
    const pw = W - L - R, ph = H - TOP - B;
    const ns = points.map((p) => p.n);
    const xt = ticks(0, Math.max(...ns) * 1.05, 6);
    const xmax = Math.ceil((Math.max(...ns) * 1.05) / xt.step) * xt.step;
    const nmin = Math.max(1, Math.min(...ns) * 0.5);
    const ys = points.map((p) => p.share).concat([p0]);
    if (p0 !== null) ys.push(limit(p0, nmin, -Z998), limit(p0, nmin, Z998));
    let lo = Math.max(0, Math.min(...ys)), hi = Math.min(100, Math.max(...ys));
    const pad = (hi - lo) * 0.06 || 1;
    const yt0 = ticks(Math.max(0, lo - pad), Math.min(100, hi + pad), 6);
    lo = Math.max(0, Math.floor((lo - pad) / yt0.step) * yt0.step);
    hi = Math.min(100, Math.ceil((hi + pad) / yt0.step) * yt0.step);
    const yt = ticks(lo, hi, 6);
    const sx = (n) => L + (n / xmax) * pw;
    const sy = (v) => TOP + ((hi - v) / (hi - lo || 1)) * ph;
    const root = svg("svg", {
      id: "funnel-plot", viewBox: `0 0 ${W} ${H}`, role: "img", class: "funnel",
      "aria-labelledby": "funnel-svg-title funnel-svg-desc", preserveAspectRatio: "xMinYMin meet",
    });
    root.append(svg("title", { id: "funnel-svg-title" }, title), svg("desc", { id: "funnel-svg-desc" }, desc));
    root.append(svg("defs", {}, svg("clipPath", { id: "funnel-clip" }, svg("rect", { x: L, y: TOP, width: pw, height: ph }))));
    root.append(svg("text", { x: L, y: 22, class: "plot-title" }, caption || title));
    // Grid, axes and ticks.
    const axes = svg("g", { class: "axes" });
    for (const v of yt.out) {
      axes.append(svg("line", { x1: L, x2: L + pw, y1: sy(v), y2: sy(v), class: "grid" }),
        svg("text", { x: L - 8, y: sy(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v, 1)));
    }
    for (const v of xt.out.filter((x) => x <= xmax)) {
      axes.append(svg("line", { x1: sx(v), x2: sx(v), y1: TOP + ph, y2: TOP + ph + 5, class: "axis" }),
        svg("text", { x: sx(v), y: TOP + ph + 19, class: "tick", "text-anchor": "middle" }, fmt(v, 0)));
    }
    axes.append(svg("line", { x1: L, x2: L + pw, y1: TOP + ph, y2: TOP + ph, class: "axis" }),
      svg("line", { x1: L, x2: L, y1: TOP, y2: TOP + ph, class: "axis" }),
      svg("text", { x: L + pw / 2, y: H - 12, class: "axis-title", "text-anchor": "middle" }, tr.x),
      svg("text", { x: 16, y: TOP + ph / 2, class: "axis-title", "text-anchor": "middle", transform: `rotate(-90 16 ${TOP + ph / 2})` }, tr.y));
    root.append(axes);
    // The national value and its limits, over the range of n.
    const lines = svg("g", { "clip-path": "url(#funnel-clip)" });
    if (p0 !== null && p0 > 0 && p0 < 100) {
      const steps = 120;
      const at = (i) => nmin * (xmax / nmin) ** (i / steps);
      for (const [z, cls] of [[Z95, "limit95"], [Z998, "limit998"]]) {
        for (const sign of [1, -1]) {
          let d = "";
          for (let i = 0; i <= steps; i++) {
            const n = at(i);
            d += `${i ? "L" : "M"}${sx(n).toFixed(1)} ${sy(limit(p0, n, sign * z)).toFixed(1)}`;
          }
          lines.append(svg("path", { d, class: `limit ${cls} ${sign > 0 ? "upper" : "lower"}`, "data-z": sign * z }));
        }
      }
    }
    if (p0 !== null) lines.append(svg("line", { x1: L, x2: L + pw, y1: sy(p0), y2: sy(p0), class: "national" }));
    root.append(lines);
    // The areas.
    const dots = svg("g", { class: "points" });
    for (const p of points) {
      const x = sx(p.n), y = sy(p.share);
      const g = svg("g", { class: `point ${p.cls}`, "data-area": p.area, "data-n": p.n, "data-share": p.share });
      g.append(marker(p.cls, x, y), svg("text", { x: x + 8, y: y + 4, class: "point-label" }, p.label));
      dots.append(g);
    }
    root.append(dots);
    // The legend beside the plot: each shape and line with its name.
    const key = svg("g", { class: "key" });
    let ky = TOP + 8;
    for (const cls of CLASSES) {
      const g = svg("g", { class: `point ${cls}` }, marker(cls, L + pw + 18, ky), svg("text", { x: L + pw + 30, y: ky + 4, class: "tick" }, tr[`${cls}Short`]));
      key.append(g);
      ky += 20;
    }
    for (const [cls, label] of [["national", tr.national], ["limit limit95", tr.lim95], ["limit limit998", tr.lim998]]) {
      key.append(svg("line", { x1: L + pw + 10, x2: L + pw + 26, y1: ky, y2: ky, class: cls }), svg("text", { x: L + pw + 30, y: ky + 4, class: "tick" }, label));
      ky += 20;
    }
    root.append(key);
    return root;
  }

  function table(points, caption, tr, fmt, el) {
    const head = el("tr", {}, ...[tr.area, "n", tr.share, tr.expected, "z", tr.cls].map((h) => el("th", { scope: "col", textContent: h })));
    const body = el("tbody");
    for (const p of [...points].sort((a, b) => (b.z ?? 0) - (a.z ?? 0))) {
      const row = el("tr", { className: p.cls }, el("th", { scope: "row", textContent: p.label }),
        el("td", { textContent: fmt(p.n, 0) }), el("td", { textContent: fmt(p.share, 1) }),
        el("td", { textContent: p.p0 === null ? "–" : fmt(p.p0, 1) }),
        el("td", { textContent: p.z === null ? "–" : fmt(p.z, 2) }),
        el("td", { className: "class", textContent: p.clsLabel }));
      row.dataset.area = p.area;
      row.dataset.class = p.cls;
      body.append(row);
    }
    return el("table", { id: "funnel-table" }, el("caption", { textContent: caption }), el("thead", {}, head), body);
  }

  // Draws the funnel plot of `ctx.doc` into `box`; `ctx.picks` keeps the choice between
  // redraws. `ctx` carries the page's JSON-stat helpers (codes, codeLabel, dimLabel,
  // datasetLabel, cube), its element maker `el` and its language.
  function render(box, ctx) {
    const { doc, r, el, picks } = ctx;
    const base = T[ctx.lang] || T.fi;
    const tr = { ...base, poikkeamaShort: "", tarkkailuShort: "", normaaliShort: "" };
    const { others, points, clsDim } = allPoints(ctx);
    for (const c of CLASSES) {
      const own = clsDim && ctx.codeLabel(doc, clsDim, c);
      tr[c] = own && own !== c ? own : base[c];
      tr[`${c}Short`] = tr[c].replace(/\s*\(.*$/, "");
    }
    const nf = (d) => new Intl.NumberFormat(LOCALE[ctx.lang] || "fi-FI", { minimumFractionDigits: d, maximumFractionDigits: d });
    const fmts = [0, 1, 2].map(nf);
    const fmt = (v, d) => fmts[d].format(v);
    const draw = () => {
      // Each select offers the codes with points under the choices before it; a choice
      // without points falls to the first (the last for a time) that has some.
      const controls = el("div", { className: "filters funnel-controls", id: "funnel-controls" });
      let left = points;
      for (const d of others) {
        const list = ctx.codes(doc, d).filter((c) => left.some((p) => p.at[d] === c));
        if (!list.includes(picks[d])) {
          const time = ((doc.role || {}).time || []).includes(d);
          picks[d] = list.length ? list[time ? list.length - 1 : 0] : ctx.codes(doc, d)[0];
        }
        left = left.filter((p) => p.at[d] === picks[d]);
        if (list.length > 1) {
          const s = el("select", { name: `funnel-${d}` });
          for (const c of list) s.append(el("option", { value: c, textContent: ctx.codeLabel(doc, d, c), selected: c === picks[d] }));
          s.addEventListener("change", () => {
            picks[d] = s.value;
            draw();
            const again = box.querySelector(`select[name="funnel-${CSS.escape(d)}"]`);
            if (again) again.focus();
          });
          controls.append(el("label", {}, ctx.dimLabel(doc, d), s));
        }
      }
      const chosen = left.map((p) => ({ ...p, label: ctx.codeLabel(doc, r.geo, p.area), clsLabel: tr[p.cls] }));
      const what = others.map((d) => ctx.codeLabel(doc, d, picks[d])).join(", ");
      const title = `${tr.heading}: ${ctx.datasetLabel(doc)} – ${what}`;
      const heading = el("h3", { id: "funnel-heading", textContent: tr.heading });
      const parts = [heading, el("p", { className: "note", textContent: tr.intro }), controls];
      if (!chosen.length) {
        parts.push(el("p", { className: "note", textContent: tr.none }));
      } else {
        const p0s = chosen.map((p) => p.p0).filter((v) => v !== null);
        const p0 = p0s.length ? p0s[0] : null;
        const count = (c) => chosen.filter((p) => p.cls === c).length;
        const desc = tr.desc(chosen.length, count("poikkeama"), count("tarkkailu"), p0 === null ? "–" : fmt(p0, 1));
        parts.push(el("figure", { className: "funnel-figure" }, plot(chosen, p0, title, desc, tr, fmt, what)),
          el("div", { className: "table-wrap" }, table(chosen, title, tr, fmt, el)));
      }
      box.replaceChildren(...parts);
      box.dataset.points = String(chosen.length);
    };
    draw();
  }

  return { applies, render, classOf, limit, Z95, Z998 };
})();
