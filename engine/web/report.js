// The reporting page: any published dataset as a table and a chart, in Finnish, Swedish
// and English. Everything comes from the daemon's indicator API (JSON-stat 2.0): the
// dimensions and their roles, the labels (`extension.labels` for Swedish and English), the
// suppressed cells (`status`) and the release of each period (`extension.releases`; the
// earlier releases of a period from /api/lines/{line}/releases). Content is built as DOM
// text, never as markup. A dataset with an area dimension and the measures `osuus`, `n`
// and `odotettu` (as `valvonta_poikkeamat`) also gets a funnel plot (funnel.js) above the
// table; other datasets are shown as before.
"use strict";

const T = {
  fi: {
    title: "Tilastot ja indikaattorit", indicators: "Indikaattorit", measure: "Tieto",
    areas: "Alueet", periods: "Jaksot", all: "Kaikki", none: "Ei mitään",
    skip: "Siirry sisältöön", catalog: "Tietotuotantolinjojen luettelo",
    suppressed: "salattu (pieni solu)", missing: "ei tietoa",
    legend: ".. = salattu (pieni solu): luku on salattu, jotta yksittäisiä henkilöitä ei voi tunnistaa. – = ei tietoa.",
    hint: "Valitse tieto, luokat, alueet ja jaksot; taulukko ja kaavio seuraavat valintoja.",
    nochart: "Kaaviokirjasto ei ole käytettävissä; tiedot näkyvät taulukossa.",
    chartnote: "Kaavion luvut ovat myös taulukossa.",
    nodata: "Ei julkaistuja tietoja.", error: "Tietojen haku epäonnistui",
    nothing: "Valitse vähintään yksi rivi ja yksi jakso.",
    count: (n) => `${n} jaksoa`,
    rows: (r, c) => `Taulukossa on ${r} riviä ja ${c} jaksoa.`,
    releases: "Julkaisut", period: "Jakso", status: "Tila", released: "Julkaistu",
    note: "Huomautus", release: "Julkaisu", preliminary: "ennakko", final: "lopullinen",
    current: "voimassa", choose: (p) => `Julkaisu, jakso ${p}`,
    showing: (p) => `Näytetään jakson ${p} aiempaa julkaisua.`,
    latest: "Näytä voimassa olevat julkaisut", updated: "Päivitetty",
  },
  sv: {
    title: "Statistik och indikatorer", indicators: "Indikatorer", measure: "Uppgift",
    areas: "Områden", periods: "Perioder", all: "Alla", none: "Inga",
    skip: "Hoppa till innehållet", catalog: "Förteckning över dataproduktionslinjer",
    suppressed: "skyddad (liten cell)", missing: "uppgift saknas",
    legend: ".. = skyddad (liten cell): talet är skyddat så att enskilda personer inte kan identifieras. – = uppgift saknas.",
    hint: "Välj uppgift, klasser, områden och perioder; tabellen och diagrammet följer valen.",
    nochart: "Diagrambiblioteket är inte tillgängligt; uppgifterna visas i tabellen.",
    chartnote: "Talen i diagrammet finns också i tabellen.",
    nodata: "Inga publicerade uppgifter.", error: "Hämtningen misslyckades",
    nothing: "Välj minst en rad och en period.",
    count: (n) => `${n} perioder`,
    rows: (r, c) => `Tabellen har ${r} rader och ${c} perioder.`,
    releases: "Publiceringar", period: "Period", status: "Status", released: "Publicerad",
    note: "Anmärkning", release: "Publicering", preliminary: "preliminär", final: "slutlig",
    current: "gällande", choose: (p) => `Publicering, period ${p}`,
    showing: (p) => `En tidigare publicering för perioden ${p} visas.`,
    latest: "Visa gällande publiceringar", updated: "Uppdaterad",
  },
  en: {
    title: "Statistics and indicators", indicators: "Indicators", measure: "Measure",
    areas: "Areas", periods: "Periods", all: "All", none: "None",
    skip: "Skip to content", catalog: "Catalogue of data production lines",
    suppressed: "suppressed (small cell)", missing: "not available",
    legend: ".. = suppressed (small cell): the figure is withheld so that no person can be identified. – = not available.",
    hint: "Choose a measure, classes, areas and periods; the table and the chart follow your choices.",
    nochart: "The charting library is not available; the figures are in the table.",
    chartnote: "The chart's figures are also in the table.",
    nodata: "No published data.", error: "Could not load the data",
    nothing: "Choose at least one row and one period.",
    count: (n) => `${n} periods`,
    rows: (r, c) => `The table has ${r} rows and ${c} periods.`,
    releases: "Releases", period: "Period", status: "Status", released: "Released",
    note: "Note", release: "Release", preliminary: "preliminary", final: "final",
    current: "current", choose: (p) => `Release, period ${p}`,
    showing: (p) => `Showing an earlier release of period ${p}.`,
    latest: "Show the current releases", updated: "Updated",
  },
};

const state = {
  lang: "fi", datasets: [], id: null, line: null, loaded: null, doc: null, release: null,
  releases: [], picks: {}, measure: null, rows: null, periods: null, chart: null, funnel: {},
};
const $ = (id) => document.getElementById(id);
const t = (k) => T[state.lang][k];
const LOCALE = { fi: "fi-FI", sv: "sv-FI", en: "en-GB" };

// An element with properties and children.
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  e.append(...kids);
  return e;
}

function text(obj) {
  if (!obj) return "";
  return obj[state.lang] || obj.fi || "";
}

// ---- JSON-stat ---------------------------------------------------------------------------

function labels(doc) {
  const all = doc.extension && doc.extension.labels;
  return (state.lang !== "fi" && all && all[state.lang]) || {};
}

function dimLabel(doc, dim) {
  const own = labels(doc)[dim];
  return (own && own.label) || doc.dimension[dim].label || dim;
}

function codeLabel(doc, dim, code) {
  const own = labels(doc)[dim];
  if (own && own.category && own.category[code]) return own.category[code];
  const l = doc.dimension[dim].category.label;
  return (l && l[code]) || code;
}

function datasetLabel(doc) {
  return labels(doc).label || doc.label || state.id;
}

function codes(doc, dim) {
  const idx = doc.dimension[dim].category.index;
  return Array.isArray(idx) ? idx : Object.keys(idx).sort((a, b) => idx[a] - idx[b]);
}

// The period (`jakso`), the area, the measures, the dimension of the rows (the area, or
// the first other dimension that is not a time) and the dimensions chosen one category of.
function roles(doc) {
  const role = doc.role || {};
  const times = role.time || [];
  const time = times.includes("jakso") ? "jakso" : times[0];
  const metric = (role.metric || [])[0];
  const geo = (role.geo || [])[0];
  const rest = doc.id.filter((d) => d !== geo && d !== time && d !== metric);
  const rowDim = geo || rest.find((d) => !times.includes(d)) || null;
  return { geo, time, metric, rowDim, others: rest.filter((d) => d !== rowDim) };
}

// The value and status of a cell, by its code in every dimension.
function cube(doc) {
  const strides = [];
  let s = 1;
  for (let k = doc.id.length - 1; k >= 0; k--) {
    strides[k] = s;
    s *= doc.size[k];
  }
  const pos = doc.id.map((d) => new Map(codes(doc, d).map((c, i) => [c, i])));
  return (at) => {
    let i = 0;
    for (let k = 0; k < doc.id.length; k++) {
      const p = pos[k].get(at[doc.id[k]]);
      if (p === undefined) return { value: null, status: null };
      i += p * strides[k];
    }
    const st = doc.status;
    const status = !st ? null : typeof st === "string" ? st : st[i];
    const value = doc.value[i];
    return { value: value === undefined ? null : value, status: status || null };
  };
}

function unitOf(doc, r) {
  const units = r.metric && doc.dimension[r.metric].category.unit;
  return (units && units[state.measure]) || {};
}

function measureText(doc, r) {
  if (!r.metric) return datasetLabel(doc);
  const unit = unitOf(doc, r).label;
  const name = codeLabel(doc, r.metric, state.measure);
  return unit ? `${name} (${unit})` : name;
}

function caption(doc, r) {
  const chosen = r.others.map((d) => `${dimLabel(doc, d)}: ${codeLabel(doc, d, state.picks[d])}`);
  return [`${datasetLabel(doc)} – ${measureText(doc, r)}`, ...chosen].join("; ");
}

function formatter(doc, r) {
  const d = unitOf(doc, r).decimals;
  const opts = Number.isInteger(d) ? { minimumFractionDigits: d, maximumFractionDigits: d } : {};
  const f = new Intl.NumberFormat(LOCALE[state.lang], opts);
  return (v) => f.format(v);
}

function when(stamp) {
  const d = new Date(stamp);
  if (!stamp || Number.isNaN(d.getTime())) return stamp || "";
  return d.toLocaleString(LOCALE[state.lang], { dateStyle: "short", timeStyle: "short", timeZone: "Europe/Helsinki" });
}

// ---- Choices -----------------------------------------------------------------------------

// Keeps the choices that the answer still has; the first time, the defaults: the first
// measure, the total (`YHT`) of every other dimension, every row and every period.
function choose(doc, r) {
  const measures = r.metric ? codes(doc, r.metric) : [];
  if (!measures.includes(state.measure)) state.measure = measures[0];
  for (const d of r.others) {
    const list = codes(doc, d);
    if (!list.includes(state.picks[d])) state.picks[d] = list.includes("YHT") ? "YHT" : list[0];
  }
  const keep = (set, all) => {
    const kept = new Set(all.filter((c) => set && set.has(c)));
    return kept.size ? kept : new Set(all);
  };
  state.rows = keep(state.rows, r.rowDim ? codes(doc, r.rowDim) : [""]);
  state.periods = keep(state.periods, r.time ? codes(doc, r.time) : [""]);
}

function select(labelText, name, options, value, onChange) {
  const s = el("select", { name });
  for (const [code, label] of options) {
    s.append(el("option", { value: code, textContent: label, selected: code === value }));
  }
  s.addEventListener("change", () => onChange(s.value));
  return el("label", {}, labelText, s);
}

// A group of checkboxes with "all" and "none"; `chosen` is the set it changes.
function checkboxes(legend, name, options, chosen) {
  const boxes = [];
  const every = (on) => {
    const b = el("button", { type: "button", className: "small", textContent: on ? t("all") : t("none") });
    b.addEventListener("click", () => {
      for (const [code] of options) (on ? chosen.add(code) : chosen.delete(code));
      boxes.forEach((c) => { c.checked = on; });
      renderData();
    });
    return b;
  };
  const list = el("div", { className: "list" });
  for (const [code, label] of options) {
    const c = el("input", { type: "checkbox", name, value: code, checked: chosen.has(code) });
    c.addEventListener("change", () => {
      if (c.checked) chosen.add(code); else chosen.delete(code);
      renderData();
    });
    boxes.push(c);
    list.append(el("label", {}, c, label));
  }
  return el("fieldset", { className: "choices" }, el("legend", { textContent: legend }),
    el("div", { className: "all" }, every(true), every(false)), list);
}

// The controls; a change redraws the table and the chart only, so the focus stays put.
function renderFilters(doc, r) {
  const box = $("filters");
  box.replaceChildren();
  if (r.metric) {
    const options = codes(doc, r.metric).map((m) => {
      const unit = (doc.dimension[r.metric].category.unit || {})[m];
      const name = codeLabel(doc, r.metric, m);
      return [m, unit && unit.label ? `${name} (${unit.label})` : name];
    });
    box.append(select(t("measure"), r.metric, options, state.measure, (v) => { state.measure = v; renderData(); }));
  }
  for (const d of r.others) {
    const options = codes(doc, d).map((c) => [c, codeLabel(doc, d, c)]);
    box.append(select(dimLabel(doc, d), d, options, state.picks[d], (v) => { state.picks[d] = v; renderData(); }));
  }
  if (r.rowDim) {
    const options = codes(doc, r.rowDim).map((c) => [c, codeLabel(doc, r.rowDim, c)]);
    box.append(checkboxes(r.geo ? t("areas") : dimLabel(doc, r.rowDim), r.rowDim, options, state.rows));
  }
  if (r.time) {
    const options = codes(doc, r.time).map((p) => [p, codeLabel(doc, r.time, p)]);
    box.append(checkboxes(t("periods"), r.time, options, state.periods));
  }
}

// ---- Table and chart -----------------------------------------------------------------------

function valueCell(c, fmt) {
  const td = el("td");
  const mark = (cls, shown, said) => {
    td.className = cls;
    td.title = said;
    const m = el("span", { className: "mark", textContent: shown });
    m.setAttribute("aria-hidden", "true");
    td.append(m, el("span", { className: "visually-hidden", textContent: said }));
  };
  if (c.status === "suppressed") mark("suppressed", "..", t("suppressed"));
  else if (c.value === null) mark("missing", "–", t("missing"));
  else td.textContent = fmt(c.value);
  return td;
}

function renderTable(doc, r, rows, periods, at) {
  if (!rows.length || !periods.length) {
    $("table-box").replaceChildren(el("p", { className: "note", textContent: t("nothing") }));
    return;
  }
  const fmt = formatter(doc, r);
  const rowLabel = (row) => (r.rowDim ? codeLabel(doc, r.rowDim, row) : measureText(doc, r));
  const head = el("tr", {}, el("th", { textContent: r.rowDim ? dimLabel(doc, r.rowDim) : "" }));
  for (const p of periods) {
    const th = el("th", { scope: "col", textContent: r.time ? codeLabel(doc, r.time, p) : measureText(doc, r) });
    th.dataset.period = p;
    head.append(th);
  }
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr", {}, el("th", { scope: "row", textContent: rowLabel(row) }));
    for (const p of periods) tr.append(valueCell(at(row, p), fmt));
    body.append(tr);
  }
  const table = el("table", { id: "data-table" }, el("caption", { textContent: caption(doc, r) }), el("thead", {}, head), body);
  $("table-box").replaceChildren(table);
}

// Bars of each row, one series per period, for up to three periods; beyond, a line over
// the periods for each row. Suppressed and missing cells are gaps.
function renderChart(doc, r, rows, periods, at) {
  if (!window.Chart) {
    $("chart-note").textContent = t("nochart");
    return;
  }
  const value = (c) => (c.status === "suppressed" ? null : c.value);
  const rowLabel = (row) => (r.rowDim ? codeLabel(doc, r.rowDim, row) : measureText(doc, r));
  const periodLabel = (p) => (r.time ? codeLabel(doc, r.time, p) : datasetLabel(doc));
  const line = periods.length > 3;
  const data = line
    ? { labels: periods.map(periodLabel), datasets: rows.map((row) => ({ label: rowLabel(row), data: periods.map((p) => value(at(row, p))), spanGaps: false })) }
    : { labels: rows.map(rowLabel), datasets: periods.map((p) => ({ label: periodLabel(p), data: rows.map((row) => value(at(row, p))) })) };
  const axis = line ? dimLabel(doc, r.time) : r.rowDim ? dimLabel(doc, r.rowDim) : "";
  const title = caption(doc, r);
  const config = {
    type: line ? "line" : "bar",
    data,
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      locale: LOCALE[state.lang],
      plugins: { title: { display: true, text: title } },
      scales: { x: { title: { display: Boolean(axis), text: axis } }, y: { title: { display: true, text: measureText(doc, r) } } },
    },
  };
  if (state.chart) state.chart.destroy();
  state.chart = new window.Chart($("chart"), config);
  $("chart").setAttribute("aria-label", title);
  $("chart-note").textContent = t("chartnote");
}

function renderData() {
  const doc = state.doc;
  const r = roles(doc);
  const cell = cube(doc);
  const rows = r.rowDim ? codes(doc, r.rowDim).filter((c) => state.rows.has(c)) : [""];
  const periods = r.time ? codes(doc, r.time).filter((p) => state.periods.has(p)) : [""];
  const at = (row, period) => {
    const pos = { ...state.picks };
    if (r.metric) pos[r.metric] = state.measure;
    if (r.rowDim) pos[r.rowDim] = row;
    if (r.time) pos[r.time] = period;
    return cell(pos);
  };
  renderTable(doc, r, rows, periods, at);
  renderChart(doc, r, rows, periods, at);
  $("legend-note").textContent = t("legend");
  $("status").textContent = t("rows")(rows.length, periods.length);
  remember();
}

// ---- Releases ------------------------------------------------------------------------------

// The release of each period shown: its status (preliminary or final), when it was made
// and any revision note, from the answer; a column to choose an earlier release of a
// period, when some period has one.
function renderReleases(doc, r) {
  const box = $("release-box");
  box.replaceChildren();
  const shown = (doc.extension && doc.extension.releases) || [];
  if (!r.time || (!shown.length && !state.releases.length)) return;
  const periods = codes(doc, r.time);
  const choosable = periods.some((p) => state.releases.filter((x) => x.period === p).length > 1);
  const statusText = (s) => (s === "preliminary" || s === "final" ? t(s) : s || "");
  const heads = [t("period"), t("status"), t("released"), t("note")].concat(choosable ? [t("release")] : []);
  const head = el("tr", {}, ...heads.map((h, i) => el("th", { scope: "col", textContent: h, className: i === 4 ? "release-choice" : "" })));
  const body = el("tbody");
  for (const p of periods) {
    const rel = shown.find((x) => x.period === p) || state.releases.find((x) => x.period === p && x.current) || {};
    const status = el("span", { className: rel.status ? `status-${rel.status}` : "", textContent: statusText(rel.status) });
    const row = el("tr", {}, el("th", { scope: "row", textContent: codeLabel(doc, r.time, p) }),
      el("td", {}, status), el("td", { textContent: when(rel.released) }),
      el("td", { className: "release-note", textContent: rel.note || "" }));
    if (choosable) row.append(el("td", { className: "release-choice" }, releaseChoice(p, rel, statusText)));
    body.append(row);
  }
  box.append(el("table", { className: "releases" }, el("caption", { textContent: t("releases") }), el("thead", {}, head), body));
  if (doc.updated) box.append(el("p", { className: "note", textContent: `${t("updated")}: ${when(doc.updated)}` }));
  if (state.release) {
    const back = el("button", { type: "button", className: "small", textContent: t("latest") });
    back.addEventListener("click", () => open(state.id, null, "#view"));
    const of = state.releases.find((x) => x.run_id === state.release) || shown[0] || {};
    box.append(el("p", { className: "note" }, `${t("showing")(of.period || "")} `, back));
  }
}

// A select of the releases of period `p`, when it has more than one.
function releaseChoice(p, rel, statusText) {
  const all = state.releases.filter((x) => x.period === p);
  if (all.length < 2) return "";
  const options = all.map((x) => [x.run_id, [when(x.released) || x.run_id, statusText(x.status), x.current ? t("current") : ""].filter(Boolean).join(" · ")]);
  const chosen = rel.run_id || (all.find((x) => x.current) || {}).run_id;
  const name = `release-${p}`;
  return select(el("span", { className: "visually-hidden", textContent: t("choose")(p) }), name, options, chosen, (run) => {
    const picked = all.find((x) => x.run_id === run);
    open(state.id, picked && picked.current ? null : run, `select[name="${CSS.escape(name)}"]`);
  });
}

function holds(release, id) {
  return (release.datasets || []).some((d) => (Array.isArray(d) ? d[0] : d && d.dataset) === id);
}

// ---- Page ------------------------------------------------------------------------------------

function renderView() {
  const doc = state.doc;
  const r = roles(doc);
  choose(doc, r);
  $("dataset-title").textContent = datasetLabel(doc);
  document.title = `${datasetLabel(doc)} – ${t("title")}`;
  renderFilters(doc, r);
  renderReleases(doc, r);
  renderFunnel(doc, r);
  renderData();
}

// The funnel plot, for a dataset of its shape (funnel.js says which); hidden for others. A
// failure there leaves the rest of the page as it is.
function renderFunnel(doc, r) {
  const box = $("funnel-box");
  const F = window.ValtavaFunnel;
  box.replaceChildren();
  box.hidden = true;
  delete box.dataset.points;
  if (!F || !F.applies(doc, r)) return;
  try {
    box.hidden = false;
    F.render(box, { doc, r, lang: state.lang, picks: state.funnel, el, codes, codeLabel, dimLabel, datasetLabel, cube });
  } catch (e) {
    box.replaceChildren(el("p", { className: "error", textContent: `${t("error")}: ${e.message}` }));
  }
}

function renderLanguage() {
  document.documentElement.lang = state.lang;
  document.title = t("title");
  $("title").textContent = t("title");
  $("skip").textContent = t("skip");
  $("catalog-link").textContent = t("catalog");
  $("indicators-heading").textContent = t("indicators");
  $("hint").textContent = t("hint");
  $("hint").className = "note";
  document.querySelectorAll("header button[data-lang]").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang));
  });
  renderList();
  if (state.doc) renderView();
}

// The list of datasets; its buttons are kept (and the focus on them) once made.
function renderList() {
  const ul = $("datasets");
  if (ul.querySelectorAll("button").length !== state.datasets.length) {
    ul.replaceChildren(...state.datasets.map((d) => {
      const b = el("button", { type: "button" });
      b.dataset.dataset = d.dataset;
      b.addEventListener("click", () => open(d.dataset, null));
      return el("li", {}, b);
    }));
  }
  ul.querySelectorAll("button").forEach((b, i) => {
    const d = state.datasets[i];
    b.textContent = `${text(d.title)} — ${d.dataset} (${t("count")(d.periods.length)})`;
    b.setAttribute("aria-current", String(d.dataset === state.id));
  });
}

// The address says what is shown, so that it can be bookmarked, shared or printed again.
function remember() {
  const q = new URLSearchParams({ dataset: state.id });
  if (state.lang !== "fi") q.set("lang", state.lang);
  if (state.release) q.set("release", state.release);
  window.history.replaceState(null, "", `?${q}`);
}

async function getJson(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`${res.status}`);
  return res.json();
}

// Shows dataset `id` (its current releases, or the release `release` of one period); the
// focus goes back to `refocus` when the control that asked was redrawn.
async function open(id, release, refocus) {
  const d = state.datasets.find((x) => x.dataset === id);
  if (state.loaded !== id) Object.assign(state, { picks: {}, measure: null, rows: null, funnel: {} });
  state.periods = null;
  Object.assign(state, { id, release: release || null, line: d ? d.line : null });
  delete document.body.dataset.ready;
  renderList();
  // The downloads are of what is shown: an earlier release too, when one is.
  const data = (format) => {
    const q = new URLSearchParams();
    if (format) q.set("format", format);
    if (release) q.set("release", release);
    const s = q.toString();
    return `/api/v1/datasets/${encodeURIComponent(id)}${s ? `?${s}` : ""}`;
  };
  $("csv-link").href = data("csv");
  $("json-link").href = data(null);
  try {
    const asked = data(null);
    const releases = state.line
      ? getJson(`/api/lines/${encodeURIComponent(state.line)}/releases`).catch(() => null) : null;
    const [doc, rels] = await Promise.all([getJson(asked), releases]);
    Object.assign(state, { doc, loaded: id });
    state.releases = ((rels && rels.releases) || []).filter((x) => holds(x, id));
    $("hint").textContent = t("hint");
    $("hint").className = "note";
    renderView();
    document.body.dataset.ready = id;
    const back = refocus && document.querySelector(refocus);
    if (back) back.focus();
  } catch (e) {
    Object.assign(state, { doc: null, loaded: null });
    $("table-box").replaceChildren();
    $("release-box").replaceChildren();
    $("hint").textContent = `${t("error")}: ${id} (${e.message})`;
    $("hint").className = "error";
  }
}

async function start() {
  const url = new URL(window.location.href);
  const lang = url.searchParams.get("lang");
  if (lang && T[lang]) state.lang = lang;
  document.querySelectorAll("header button[data-lang]").forEach((b) => {
    b.addEventListener("click", () => { state.lang = b.dataset.lang; renderLanguage(); });
  });
  const body = await getJson("/api/datasets");
  state.datasets = body.datasets.filter((d) => d.periods.length > 0);
  renderLanguage();
  if (state.datasets.length === 0) {
    $("hint").textContent = t("nodata");
    document.body.dataset.ready = "none";
    return;
  }
  const wanted = url.searchParams.get("dataset");
  const known = state.datasets.some((d) => d.dataset === wanted);
  await open(known ? wanted : state.datasets[0].dataset, known ? url.searchParams.get("release") : null);
}

start();
