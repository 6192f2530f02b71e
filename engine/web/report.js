// The reporting page: indicators of the published datasets as a table and a chart, in
// Finnish, Swedish and English. Data come from the daemon's indicator API (JSON-stat 2.0).
"use strict";

const T = {
  fi: {
    title: "Tilastot ja indikaattorit", indicators: "Indikaattorit", measure: "Tieto",
    areas: "Alueet", period: "Jakso", suppressed: "salattu (pieni solu)",
    hint: "Valitse indikaattori, tieto ja alueet. Salatut solut on merkitty ”..”.",
    nochart: "Kaaviokirjasto ei ole käytettävissä; tiedot näkyvät taulukossa.",
    nodata: "Ei julkaistuja tietoja.", error: "Tietojen haku epäonnistui",
    periods: (n) => `${n} jaksoa`,
  },
  sv: {
    title: "Statistik och indikatorer", indicators: "Indikatorer", measure: "Uppgift",
    areas: "Områden", period: "Period", suppressed: "skyddad (liten cell)",
    hint: "Välj indikator, uppgift och områden. Skyddade celler är märkta ”..”.",
    nochart: "Diagrambiblioteket är inte tillgängligt; uppgifterna visas i tabellen.",
    nodata: "Inga publicerade uppgifter.", error: "Hämtningen misslyckades",
    periods: (n) => `${n} perioder`,
  },
  en: {
    title: "Statistics and indicators", indicators: "Indicators", measure: "Measure",
    areas: "Areas", period: "Period", suppressed: "suppressed (small cell)",
    hint: "Choose an indicator, a measure and areas. Suppressed cells are marked “..”.",
    nochart: "The charting library is not available; the figures are in the table.",
    nodata: "No published data.", error: "Could not load the data",
    periods: (n) => `${n} periods`,
  },
};

const state = { lang: "fi", datasets: [], id: null, doc: null, picks: {}, measure: null, areas: null, chart: null };
const $ = (id) => document.getElementById(id);
const t = (k) => T[state.lang][k];

function text(obj) {
  if (!obj) return "";
  return obj[state.lang] || obj.fi || "";
}

function dimLabel(doc, dim) {
  if (state.lang !== "fi") {
    const ext = doc.extension && doc.extension.labels && doc.extension.labels[state.lang];
    if (ext && ext[dim] && ext[dim].label) return ext[dim].label;
  }
  return doc.dimension[dim].label || dim;
}

function codeLabel(doc, dim, code) {
  if (state.lang !== "fi") {
    const ext = doc.extension && doc.extension.labels && doc.extension.labels[state.lang];
    const c = ext && ext[dim] && ext[dim].category;
    if (c && c[code]) return c[code];
  }
  const l = doc.dimension[dim].category.label;
  return (l && l[code]) || code;
}

function codes(doc, dim) {
  const idx = doc.dimension[dim].category.index;
  return Array.isArray(idx) ? idx : Object.keys(idx).sort((a, b) => idx[a] - idx[b]);
}

// The value and status of the cell at the given codes.
function cell(doc, at) {
  let pos = 0;
  doc.id.forEach((dim, k) => {
    const list = codes(doc, dim);
    pos = pos * doc.size[k] + list.indexOf(at[dim]);
  });
  const status = doc.status ? (Array.isArray(doc.status) ? doc.status[pos] : doc.status[String(pos)]) : null;
  return { value: doc.value[pos], status };
}

function roles(doc) {
  const role = doc.role || {};
  const geo = (role.geo || [])[0];
  const time = (role.time || []).includes("jakso") ? "jakso" : (role.time || [])[0];
  const metric = (role.metric || [])[0];
  const others = doc.id.filter((d) => d !== geo && d !== time && d !== metric);
  return { geo, time, metric, others };
}

function renderLanguage() {
  document.documentElement.lang = state.lang;
  $("title").textContent = t("title");
  $("indicators-heading").textContent = t("indicators");
  $("hint").textContent = t("hint");
  document.querySelectorAll("header button[data-lang]").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang));
  });
  renderList();
  if (state.doc) renderView();
}

function renderList() {
  const ul = $("datasets");
  ul.replaceChildren();
  for (const d of state.datasets) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.dataset = d.dataset;
    b.setAttribute("aria-current", String(d.dataset === state.id));
    b.textContent = `${text(d.title)} — ${d.dataset} (${t("periods")(d.periods.length)})`;
    b.addEventListener("click", () => open(d.dataset));
    li.append(b);
    ul.append(li);
  }
}

function select(labelText, options, value, onChange, name) {
  const label = document.createElement("label");
  label.textContent = labelText;
  const s = document.createElement("select");
  s.name = name;
  for (const [code, lab] of options) {
    const o = document.createElement("option");
    o.value = code;
    o.textContent = lab;
    o.selected = code === value;
    s.append(o);
  }
  s.addEventListener("change", () => onChange(s.value));
  label.append(s);
  return label;
}

function renderView() {
  const doc = state.doc;
  const r = roles(doc);
  $("dataset-title").textContent = state.lang === "fi" ? doc.label
    : ((doc.extension && doc.extension.labels && doc.extension.labels[state.lang] && doc.extension.labels[state.lang].label) || doc.label);
  const filters = $("filters");
  filters.replaceChildren();
  const measures = codes(doc, r.metric);
  if (!state.measure || !measures.includes(state.measure)) state.measure = measures[0];
  filters.append(select(t("measure"), measures.map((m) => [m, codeLabel(doc, r.metric, m)]), state.measure,
    (v) => { state.measure = v; renderView(); }, r.metric));
  for (const dim of r.others) {
    const list = codes(doc, dim);
    if (!list.includes(state.picks[dim])) state.picks[dim] = list.includes("YHT") ? "YHT" : list[0];
    filters.append(select(dimLabel(doc, dim), list.map((c) => [c, codeLabel(doc, dim, c)]), state.picks[dim],
      (v) => { state.picks[dim] = v; renderView(); }, dim));
  }
  const areas = r.geo ? codes(doc, r.geo) : [""];
  if (!state.areas) {
    state.areas = new Set(areas.includes("SSS") ? ["SSS"] : []);
    areas.filter((a) => a !== "SSS").slice(0, 5).forEach((a) => state.areas.add(a));
  }
  if (r.geo) {
    const box = document.createElement("fieldset");
    box.className = "areas";
    const legend = document.createElement("legend");
    legend.textContent = t("areas");
    box.append(legend);
    for (const a of areas) {
      const l = document.createElement("label");
      const c = document.createElement("input");
      c.type = "checkbox";
      c.value = a;
      c.checked = state.areas.has(a);
      c.addEventListener("change", () => { c.checked ? state.areas.add(a) : state.areas.delete(a); renderView(); });
      l.append(c, " ", codeLabel(doc, r.geo, a));
      box.append(l);
    }
    filters.append(box);
  }
  const periods = r.time ? codes(doc, r.time) : [""];
  const at = (area, period) => {
    const pos = { [r.metric]: state.measure, ...state.picks };
    if (r.geo) pos[r.geo] = area;
    if (r.time) pos[r.time] = period;
    return cell(doc, pos);
  };
  const fmt = new Intl.NumberFormat(state.lang === "en" ? "en-GB" : state.lang === "sv" ? "sv-FI" : "fi-FI");
  // The table: every area by period.
  const table = document.createElement("table");
  table.id = "data-table";
  const cap = document.createElement("caption");
  cap.textContent = codeLabel(doc, r.metric, state.measure);
  table.append(cap);
  const head = document.createElement("tr");
  const corner = document.createElement("th");
  corner.textContent = r.geo ? dimLabel(doc, r.geo) : "";
  head.append(corner);
  for (const p of periods) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = r.time ? codeLabel(doc, r.time, p) : "";
    head.append(th);
  }
  table.append(head);
  for (const a of areas) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = r.geo ? codeLabel(doc, r.geo, a) : "";
    tr.append(th);
    for (const p of periods) {
      const td = document.createElement("td");
      const c = at(a, p);
      if (c.status === "suppressed") {
        td.textContent = "..";
        td.className = "suppressed";
        td.title = t("suppressed");
      } else {
        td.textContent = c.value === null || c.value === undefined ? "" : fmt.format(c.value);
      }
      tr.append(td);
    }
    table.append(tr);
  }
  $("table-box").replaceChildren(table);
  // The chart: chosen areas over time; suppressed cells are gaps.
  if (!window.Chart) {
    $("legend-note").textContent = t("nochart");
    return;
  }
  $("legend-note").textContent = `.. = ${t("suppressed")}`;
  const series = areas.filter((a) => state.areas.has(a)).map((a) => ({
    label: r.geo ? codeLabel(doc, r.geo, a) : "",
    data: periods.map((p) => { const c = at(a, p); return c.status === "suppressed" ? null : c.value; }),
    spanGaps: false,
  }));
  const config = {
    type: "line",
    data: { labels: periods.map((p) => (r.time ? codeLabel(doc, r.time, p) : p)), datasets: series },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      plugins: { title: { display: true, text: codeLabel(doc, r.metric, state.measure) } },
      scales: { x: { title: { display: true, text: r.time ? dimLabel(doc, r.time) : "" } } },
    },
  };
  if (state.chart) state.chart.destroy();
  state.chart = new window.Chart($("chart"), config);
  $("chart").setAttribute("aria-label", codeLabel(doc, r.metric, state.measure));
}

async function open(id) {
  state.id = id;
  state.picks = {};
  state.areas = null;
  renderList();
  $("csv-link").href = `/api/v1/datasets/${encodeURIComponent(id)}?format=csv`;
  $("json-link").href = `/api/v1/datasets/${encodeURIComponent(id)}`;
  try {
    const res = await fetch(`/api/v1/datasets/${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`${res.status}`);
    state.doc = await res.json();
    renderView();
    document.body.dataset.ready = id;
  } catch (e) {
    state.doc = null;
    $("table-box").replaceChildren();
    $("dataset-title").textContent = `${t("error")}: ${id} (${e.message})`;
    $("dataset-title").className = "error";
  }
}

async function start() {
  const url = new URL(window.location.href);
  const lang = url.searchParams.get("lang");
  if (lang && T[lang]) state.lang = lang;
  document.querySelectorAll("header button[data-lang]").forEach((b) => {
    b.addEventListener("click", () => { state.lang = b.dataset.lang; renderLanguage(); });
  });
  const res = await fetch("/api/datasets");
  const body = await res.json();
  state.datasets = body.datasets.filter((d) => d.periods.length > 0);
  renderLanguage();
  if (state.datasets.length === 0) {
    $("hint").textContent = t("nodata");
    document.body.dataset.ready = "none";
    return;
  }
  const wanted = url.searchParams.get("dataset");
  await open(state.datasets.some((d) => d.dataset === wanted) ? wanted : state.datasets[0].dataset);
}

start();
