// The catalog page: the lines the daemon serves, their owners, legal bases, code sets and
// datasets (columns, links to the data, lineage and quality), with a search, in Finnish,
// Swedish and English. Everything comes from /api/catalog and is built as DOM text, never
// as markup.
"use strict";

const T = {
  fi: {
    title: "Tietotuotantolinjojen luettelo", page: "Tilastot ja indikaattorit",
    skip: "Siirry sisältöön", search: "Hae linjoista, aineistoista, sarakkeista, luokituksista, omistajista ja oikeusperustoista",
    go: "Hae", owner: "Omistaja", contact: "Yhteystieto", legal: "Oikeusperusta",
    purpose: "Tarkoitus", schedule: "Aikataulu (cron, Suomen aika)", codesets: "Luokitukset",
    name: "Nimi", description: "Kuvaus", version: "Versio", rows: "Rivejä", role: "Rooli",
    type: "Tyyppi", unit: "Yksikkö", dimensions: "Ulottuvuudet", disclosure: "Tietosuoja",
    none: "ei", columns: (d) => `Aineiston ${d} sarakkeet`, dataset: "Aineisto",
    matched: "Osumat",
    links: { page: "Taulukko ja kaavio", data: "JSON-stat ja CSV", table: "PxWeb", lineage: "Sarakkeiden alkuperä", quality: "Laatuyhteenveto" },
    fields: { line: "linja", title: "otsikko", description: "kuvaus", owner: "omistaja", legal_basis: "oikeusperusta", codeset: "luokitus", dataset: "aineisto", column: "sarake" },
    roles: { dimension: "ulottuvuus", measure: "tieto", status: "tila" },
    all: (n) => `${n} linjaa.`, found: (n, q) => `Haulla ”${q}” löytyi ${n} linjaa.`,
    nothing: (q) => `Haulla ”${q}” ei löytynyt mitään.`, error: "Luettelon haku epäonnistui",
  },
  sv: {
    title: "Förteckning över dataproduktionslinjer", page: "Statistik och indikatorer",
    skip: "Hoppa till innehållet", search: "Sök bland linjer, datamaterial, kolumner, klassifikationer, ägare och rättsliga grunder",
    go: "Sök", owner: "Ägare", contact: "Kontakt", legal: "Rättslig grund",
    purpose: "Syfte", schedule: "Tidtabell (cron, finsk tid)", codesets: "Klassifikationer",
    name: "Namn", description: "Beskrivning", version: "Version", rows: "Rader", role: "Roll",
    type: "Typ", unit: "Enhet", dimensions: "Dimensioner", disclosure: "Dataskydd",
    none: "inget", columns: (d) => `Kolumnerna i ${d}`, dataset: "Datamaterial",
    matched: "Träffar",
    links: { page: "Tabell och diagram", data: "JSON-stat och CSV", table: "PxWeb", lineage: "Kolumnernas ursprung", quality: "Kvalitetssammandrag" },
    fields: { line: "linje", title: "titel", description: "beskrivning", owner: "ägare", legal_basis: "rättslig grund", codeset: "klassifikation", dataset: "datamaterial", column: "kolumn" },
    roles: { dimension: "dimension", measure: "uppgift", status: "status" },
    all: (n) => `${n} linjer.`, found: (n, q) => `Sökningen ”${q}” gav ${n} linjer.`,
    nothing: (q) => `Sökningen ”${q}” gav inga träffar.`, error: "Hämtningen av förteckningen misslyckades",
  },
  en: {
    title: "Catalogue of data production lines", page: "Statistics and indicators",
    skip: "Skip to content", search: "Search lines, datasets, columns, code sets, owners and legal bases",
    go: "Search", owner: "Owner", contact: "Contact", legal: "Legal basis",
    purpose: "Purpose", schedule: "Schedule (cron, Finnish time)", codesets: "Code sets",
    name: "Name", description: "Description", version: "Version", rows: "Rows", role: "Role",
    type: "Type", unit: "Unit", dimensions: "Dimensions", disclosure: "Disclosure control",
    none: "none", columns: (d) => `Columns of ${d}`, dataset: "Dataset",
    matched: "Matches",
    links: { page: "Table and chart", data: "JSON-stat and CSV", table: "PxWeb", lineage: "Column lineage", quality: "Quality summary" },
    fields: { line: "line", title: "title", description: "description", owner: "owner", legal_basis: "legal basis", codeset: "code set", dataset: "dataset", column: "column" },
    roles: { dimension: "dimension", measure: "measure", status: "status" },
    all: (n) => `${n} lines.`, found: (n, q) => `The search “${q}” found ${n} lines.`,
    nothing: (q) => `The search “${q}” found nothing.`, error: "Could not load the catalogue",
  },
};

const state = { lang: "fi", q: "", answer: null };
const $ = (id) => document.getElementById(id);
const t = (k) => T[state.lang][k];

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  e.append(...kids.filter((k) => k !== null && k !== undefined));
  return e;
}

function text(obj) {
  if (!obj) return "";
  return obj[state.lang] || obj.fi || "";
}

function table(captionText, heads, rows) {
  const head = el("tr", {}, ...heads.map((h) => el("th", { scope: "col", textContent: h })));
  const body = el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c, i) => (i === 0
    ? el("th", { scope: "row" }, c) : el("td", {}, c))))));
  return el("table", {}, el("caption", { textContent: captionText }), el("thead", {}, head), body);
}

function facts(l) {
  const dl = el("dl", { className: "facts" });
  const add = (name, value) => {
    if (value) dl.append(el("dt", { textContent: name }), el("dd", {}, value));
  };
  add(t("owner"), l.owner);
  add(t("contact"), l.contact);
  add(t("legal"), l.legal_basis);
  add(t("purpose"), text(l.purpose));
  add(t("schedule"), l.schedule ? el("code", { textContent: l.schedule }) : null);
  return dl;
}

function matches(l) {
  if (!l.matches.length) return null;
  const items = l.matches.map((m) => el("li", {},
    `${t("fields")[m.field] || m.field}: `, el("mark", { textContent: m.text }),
    m.dataset && m.field !== "dataset" ? ` (${m.dataset})` : ""));
  return el("div", {}, el("p", { textContent: `${t("matched")}:` }), el("ul", { className: "matches" }, ...items));
}

function dataset(d) {
  const id = `ds-${d.dataset}`;
  const links = Object.entries(t("links")).map(([key, label]) =>
    el("li", {}, el("a", { href: d.links[key], textContent: label })));
  const columns = d.columns.map((c) => [el("code", { textContent: c.name }), t("roles")[c.role] || c.role, c.type,
    text(c.description), c.unit || ""]);
  return el("section", {},
    el("h3", { id }, `${t("dataset")} `, el("code", { textContent: d.dataset })),
    el("ul", { className: "links" }, ...links),
    el("p", { className: "note", textContent: `${t("dimensions")}: ${d.dimensions.join(", ")} · ${t("disclosure")}: ${d.disclosure || t("none")}` }),
    table(t("columns")(d.dataset), [t("name"), t("role"), t("type"), t("description"), t("unit")], columns));
}

function line(l) {
  const codesets = l.codesets.map((c) => [el("code", { textContent: c.name }), c.description || "", c.version || "", String(c.rows)]);
  return el("article", { className: "line" },
    el("h2", { id: `line-${l.line}` }, `${text(l.title)} `, el("code", { textContent: l.line })),
    el("p", { textContent: text(l.description) }),
    matches(l), facts(l),
    l.codesets.length ? table(t("codesets"), [t("name"), t("description"), t("version"), t("rows")], codesets) : null,
    ...l.datasets.map(dataset));
}

function render() {
  const a = state.answer;
  if (!a) return;
  $("results").replaceChildren(...a.lines.map(line));
  const n = a.lines.length;
  $("status").textContent = !a.query ? t("all")(n) : n ? t("found")(n, a.query) : t("nothing")(a.query);
}

function renderLanguage() {
  document.documentElement.lang = state.lang;
  document.title = `Valtava – ${t("title")}`;
  $("title").textContent = t("title");
  $("page-link").textContent = t("page");
  $("skip").textContent = t("skip");
  $("q-label").textContent = t("search");
  $("search-button").textContent = t("go");
  document.querySelectorAll("header button[data-lang]").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang));
  });
  render();
  remember();
}

function remember() {
  const q = new URLSearchParams();
  if (state.q) q.set("q", state.q);
  if (state.lang !== "fi") q.set("lang", state.lang);
  const s = q.toString();
  window.history.replaceState(null, "", s ? `?${s}` : window.location.pathname);
}

async function search(q) {
  state.q = q;
  delete document.body.dataset.ready;
  remember();
  try {
    const res = await fetch(`/api/catalog${q ? `?q=${encodeURIComponent(q)}` : ""}`, { headers: { Accept: "application/json" } });
    const body = await res.json();
    if (!res.ok) throw new Error((body.error && body.error.message) || `${res.status}`);
    state.answer = body;
    render();
  } catch (e) {
    state.answer = null;
    $("results").replaceChildren();
    $("status").textContent = `${t("error")}: ${e.message}`;
  }
  document.body.dataset.query = q;
  document.body.dataset.ready = "catalog";
}

function start() {
  const url = new URL(window.location.href);
  const lang = url.searchParams.get("lang");
  if (lang && T[lang]) state.lang = lang;
  const q = (url.searchParams.get("q") || "").trim();
  $("q").value = q;
  document.querySelectorAll("header button[data-lang]").forEach((b) => {
    b.addEventListener("click", () => { state.lang = b.dataset.lang; renderLanguage(); });
  });
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    search($("q").value.trim());
  });
  renderLanguage();
  search(q);
}

start();
