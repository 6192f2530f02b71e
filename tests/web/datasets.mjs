// Every shipped dataset on the reporting page, and the catalog page, in real headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core from engine/web/node_modules),
// checked with axe-core's WCAG 2.0/2.1 A and AA rules:
//   node tests/web/datasets.mjs http://127.0.0.1:PORT target/web
// For each dataset: a real table and chart, a filter that changes the table, rows that
// follow the area checkboxes, Swedish and English, no axe violation, a screenshot
// OUT_DIR/<dataset>.png, every same-origin link answering 200, and the page on one release
// (`?release=<run-id>`) whose CSV and JSON-stat links carry it; then the catalog page (its
// search, a refused long search, the quality summary per source, axe, every same-origin
// link answering 200) and OUT_DIR/catalog.png. The last line printed is one JSON summary,
//   {"datasets": {"<id>": {"rows", "cells", "numeric", "series", "points", "changed", "links", "release", "violations"}},
//    "catalog": {"lines", "found", "none", "long_query", "lineage_columns", "quality_rows_read", "links", "violations"},
//    "errors": [...]}
// and the exit status is 1 when anything failed (each failure is in `errors`).
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../../engine/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const AXE = require.resolve("axe-core");

const DATASETS = ["ensihoito_kuukausi", "hoitoonpaasy_kuukausi", "henkilostomitoitus_neljannes",
  "rokotuskattavuus", "diabetes_vuosi", "henkilosto_neljannes", "lastensuojeluilmoitukset",
  "palvelutarpeen_arvioinnit", "talous_vuosi", "rai_puolivuosi", "asiakaskokemus_vuosi"];
const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
const TITLES = { fi: "Tilastot ja indikaattorit", sv: "Statistik och indikatorer", en: "Statistics and indicators" };
const COUNTRY = { fi: "Koko maa", sv: "Hela landet", en: "Whole country" };

const [base, out] = process.argv.slice(2);
if (!base || !out) {
  console.error("usage: node tests/web/datasets.mjs BASE_URL OUT_DIR");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const summary = { datasets: {}, catalog: {}, errors: [] };

// A failed expectation, with what was seen.
class Failed extends Error {}
function expect(ok, what) {
  if (!ok) throw new Failed(what);
}

// axe-core, served as if from the daemon: the pages allow scripts from the daemon only, so
// the inline copy `addScriptTag({ path })` makes would be refused by their policy.
async function axe(page) {
  await page.addScriptTag({ url: `${base}/__axe.js` });
  return page.evaluate(async (tags) => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: tags } });
    return r.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(" ")}: ${n.failureSummary || ""}`),
    }));
  }, TAGS);
}

function table(page) {
  return page.$eval("#data-table", (t) => {
    const cells = [...t.querySelectorAll("tbody td")];
    const plain = cells.filter((td) => !td.classList.contains("suppressed") && !td.classList.contains("missing"));
    return {
      rows: t.querySelectorAll("tbody th[scope=row]").length,
      labels: [...t.querySelectorAll("tbody th[scope=row]")].map((th) => th.textContent),
      columns: t.querySelectorAll("thead th[scope=col]").length,
      cells: cells.length,
      numeric: plain.filter((td) => /^-?[0-9]/.test(td.textContent.replace(/\s/g, ""))).length,
      caption: t.caption ? t.caption.textContent.trim() : "",
      text: t.tBodies[0].innerText,
    };
  });
}

function chart(page) {
  return page.evaluate(() => {
    const c = window.Chart && window.Chart.getChart(document.getElementById("chart"));
    if (!c) return { series: 0, points: 0 };
    const sets = c.data.datasets;
    const points = sets.reduce((n, d) => n + d.data.filter((v) => v !== null && v !== undefined).length, 0);
    return { type: c.config.type, series: sets.length, points, withPoints: sets.filter((d) => d.data.some((v) => v !== null && v !== undefined)).length };
  });
}

// Tries the classes of each dimension (the measure last) until the table's figures change;
// "dimension=code" of the change.
async function changeFilter(page, before) {
  const selects = await page.$$eval("#filters select", (ss) => ss.map((s) => ({
    name: s.name, value: s.value, options: [...s.options].map((o) => o.value),
  })));
  selects.sort((a, b) => Number(a.name === "tiedot") - Number(b.name === "tiedot"));
  for (const s of selects) {
    for (const v of s.options.filter((o) => o !== s.value)) {
      await page.selectOption(`#filters select[name="${s.name}"]`, v);
      const now = await page.$("#data-table") ? (await table(page)).text : "";
      if (now !== before) return `${s.name}=${v}`;
    }
  }
  return null;
}

// Every same-origin link of the page (`a[href]`, without its fragment) fetched from the page
// answers 200; how many there were.
async function checkLinks(page, name) {
  const origin = new URL(base).origin;
  const hrefs = await page.$$eval("a[href]", (as) => as.map((a) => a.href));
  const urls = [...new Set(hrefs.map((h) => new URL(h)).filter((u) => u.origin === origin)
    .map((u) => { u.hash = ""; return u.href; }))];
  // One at a time: the daemon answers 503 beyond its requests at once.
  const statuses = await page.evaluate(async (all) => {
    const out = [];
    for (const u of all) out.push((await fetch(u, { redirect: "manual" })).status);
    return out;
  }, urls);
  const broken = urls.map((u, i) => [u, statuses[i]]).filter(([, s]) => s !== 200);
  expect(urls.length > 0 && broken.length === 0,
    `${name}: links that do not answer 200: ${broken.map(([u, s]) => `${u} → ${s}`).join(", ") || "none found"}`);
  return urls.length;
}

// The page on one release of the dataset (`?release=<run-id>`, as a revision is shown):
// its CSV and JSON-stat links are of that release, and every link answers.
async function checkRelease(page, id) {
  const runs = await page.evaluate(async (id) => {
    const get = async (u) => (await fetch(u)).json();
    const d = (await get("/api/datasets")).datasets.find((x) => x.dataset === id);
    const all = (await get(`/api/lines/${encodeURIComponent(d.line)}/releases`)).releases;
    return all.filter((r) => r.datasets.some((x) => x[0] === id)).map((r) => r.run_id);
  }, id);
  expect(runs.length > 0, `${id}: no release`);
  const run = runs[0];
  await page.goto(`${base}/?dataset=${id}&release=${encodeURIComponent(run)}`);
  await page.waitForSelector(`body[data-ready='${id}']`, { timeout: 20000 }).catch(async () => {
    throw new Failed(`release ${run} not ready: ${await page.textContent("#hint")}`);
  });
  for (const link of ["#csv-link", "#json-link"]) {
    const href = await page.getAttribute(link, "href");
    expect(new URL(href, base).searchParams.get("release") === run, `${id}: ${link} is ${href}, not of release ${run}`);
  }
  await checkLinks(page, `${id} release ${run}`);
  return run;
}

async function checkDataset(page, id) {
  await page.goto(`${base}/?dataset=${id}`);
  await page.waitForSelector(`body[data-ready='${id}']`, { timeout: 20000 }).catch(async () => {
    throw new Failed(`not ready: ${await page.textContent("#hint")}`);
  });
  const first = await table(page);
  expect(first.rows >= 1, `no row headers: ${JSON.stringify(first)}`);
  expect(first.numeric >= 1, `no numeric cell: ${first.text.slice(0, 200)}`);
  expect(first.caption.length > 0, "no caption");
  expect(first.columns >= 1, "no period columns");
  const drawn = await chart(page);
  expect(drawn.series >= 1 && drawn.withPoints >= 1, `chart: ${JSON.stringify(drawn)}`);
  const changed = await changeFilter(page, first.text);
  expect(changed !== null, "no filter changes the table");
  // The rows follow the row checkboxes.
  if (first.rows > 1) {
    const box = page.locator("#filters fieldset.choices").first().locator("input[type=checkbox]").first();
    await box.uncheck();
    const fewer = (await table(page)).rows;
    await box.check();
    expect(fewer === first.rows - 1 && (await table(page)).rows === first.rows, `rows ${first.rows} → ${fewer}`);
  }
  await checkLanguages(page, first.labels.includes(COUNTRY.fi));
  await page.click("header button[data-lang=fi]");
  const violations = await axe(page);
  await page.screenshot({ path: path.join(out, `${id}.png`), fullPage: true });
  const links = await checkLinks(page, id);
  const release = await checkRelease(page, id);
  return { rows: first.rows, cells: first.cells, numeric: first.numeric, series: drawn.series, points: drawn.points, changed, links, release, violations };
}

async function checkLanguages(page, hasCountry) {
  for (const lang of ["sv", "en"]) {
    await page.click(`header button[data-lang=${lang}]`);
    expect(await page.getAttribute("html", "lang") === lang, `html lang is not ${lang}`);
    expect(await page.textContent("#title") === TITLES[lang], `title in ${lang}`);
    expect(await page.getAttribute(`header button[data-lang=${lang}]`, "aria-pressed") === "true", `${lang} not pressed`);
    const shown = await table(page);
    expect(shown.rows >= 1 && shown.caption.length > 0, `no table in ${lang}`);
    if (hasCountry) expect(shown.labels.includes(COUNTRY[lang]), `${COUNTRY[lang]} not in ${shown.labels.join()}`);
  }
}

async function searchCatalog(page, q) {
  await page.fill("#q", q);
  await page.press("#q", "Enter");
  await page.waitForSelector(`body[data-ready=catalog][data-query="${q}"]`, { timeout: 10000 });
  return page.$$eval("#results article.line", (as) => as.map((a) => ({
    line: a.querySelector("h2 code").textContent,
    matches: [...a.querySelectorAll("ul.matches li")].map((li) => li.textContent),
  })));
}

async function checkCatalog(page) {
  await page.goto(`${base}/catalog`);
  await page.waitForSelector("body[data-ready=catalog]", { timeout: 10000 });
  const lines = await page.$$eval("#results article.line", (as) => as.length);
  for (const id of DATASETS) expect(await page.$(`#ds-${id}`), `${id} not in the catalog`);
  const found = await searchCatalog(page, "KATTAVUUS");
  expect(found.length >= 1 && found.length < lines, `search: ${JSON.stringify(found)}`);
  expect(found.every((l) => l.matches.some((m) => /kattavuus/i.test(m))), `matches: ${JSON.stringify(found)}`);
  const none = await searchCatalog(page, "ei-tällaista-xyzzy");
  expect(none.length === 0 && (await page.textContent("#status")).includes("xyzzy"), "a search for nothing found something");
  const long = await page.request.get(`${base}/api/catalog?q=${"x".repeat(201)}`);
  expect(long.status() === 400, `a long search answered ${long.status()}`);
  const lineage = await (await page.request.get(`${base}/api/datasets/ensihoito_kuukausi/lineage`)).json();
  expect(Array.isArray(lineage.columns) && lineage.columns.length > 0, `lineage: ${JSON.stringify(lineage)}`);
  const quality = await (await page.request.get(`${base}/api/datasets/ensihoito_kuukausi/quality`)).json();
  expect(Array.isArray(quality.sources) && quality.sources.length > 0 && quality.sources.every((s) => s.rows_read > 0),
    `quality: ${JSON.stringify(quality)}`);
  // Each source apart, never one total over the three FHIR resources.
  const diabetes = await (await page.request.get(`${base}/api/datasets/diabetes_vuosi/quality`)).json();
  const read = (diabetes.sources || []).map((s) => s.source).sort();
  expect(JSON.stringify(read) === JSON.stringify(["havainnot_kanta", "potilaat_kanta", "sairaudet_kanta"]),
    `diabetes quality: ${JSON.stringify(diabetes)}`);
  await searchCatalog(page, "");
  await page.click("header button[data-lang=sv]");
  expect(await page.getAttribute("html", "lang") === "sv", "catalog not in Swedish");
  await page.click("header button[data-lang=fi]");
  const violations = await axe(page);
  await page.screenshot({ path: path.join(out, "catalog.png"), fullPage: true });
  const links = await checkLinks(page, "catalog");
  return { lines, found: found.length, none: none.length, long_query: long.status(),
    lineage_columns: lineage.columns.length,
    quality_rows_read: quality.sources.reduce((n, s) => n + s.rows_read, 0), links, violations };
}

// Runs one check on a fresh page; its failure, page errors and axe violations go to `errors`.
async function run(context, name, check) {
  const page = await context.newPage();
  const seen = [];
  page.on("pageerror", (e) => seen.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") seen.push(m.text()); });
  try {
    const result = await check(page);
    for (const v of result.violations) summary.errors.push(`${name}: axe ${v.id} (${v.impact}): ${v.help}; ${v.nodes.join(" | ")}`);
    return result;
  } catch (e) {
    summary.errors.push(`${name}: ${e instanceof Failed ? e.message : e.stack || e}`);
    await page.screenshot({ path: path.join(out, `${name}-failed.png`), fullPage: true }).catch(() => {});
    return { failed: e.message };
  } finally {
    for (const s of seen) summary.errors.push(`${name}: page error: ${s}`);
    await page.close();
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  await context.route(`${base}/__axe.js`, (route) => route.fulfill({ path: AXE, contentType: "text/javascript" }));
  for (const id of DATASETS) summary.datasets[id] = await run(context, id, (page) => checkDataset(page, id));
  summary.catalog = await run(context, "catalog", checkCatalog);
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
process.exitCode = summary.errors.length ? 1 : 0;
