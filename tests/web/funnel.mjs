// The funnel plot of the reporting page in real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core from engine/web/node_modules), checked with axe-core's WCAG
// 2.0/2.1 A and AA rules:
//   node tests/web/funnel.mjs http://127.0.0.1:PORT target/web [DATASET]
// DATASET (default valvonta_poikkeamat) is read from the daemon's JSON-stat independently of
// the page. For every combination of the funnel's choices (the indicator, the source period)
// that has points in the served document, reached through the selects (a dimension with a
// single code under the earlier choices has no select; every combination must be offered): one
// point per area with a share and a count in that choice, each with its class (`poikkeama`,
// `tarkkailu`, `normaali`, as the served `z` says, away from the thresholds' rounding), the
// same class in the table, four limit curves and the national line; Swedish and English;
// no axe violation; a dataset of another shape shows no funnel plot. Screenshot
// OUT_DIR/<dataset>_funnel.png. The last line printed is one JSON summary,
//   {"dataset", "choices": [{"picks": {dim: code}, "points": [{"area", "class", "n", "share"}], "limits", "national"}],
//    "languages", "other", "violations", "errors": [...]}
// and the exit status is 1 when anything failed (each failure is in `errors`).
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../../engine/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const AXE = require.resolve("axe-core");

const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
const HEADINGS = { fi: "Suppilokaavio", sv: "Trattdiagram", en: "Funnel plot" };
const CLASSES = ["poikkeama", "tarkkailu", "normaali"];

const [base, out, wanted] = process.argv.slice(2);
const id = wanted || "valvonta_poikkeamat";
if (!base || !out) {
  console.error("usage: node tests/web/funnel.mjs BASE_URL OUT_DIR [DATASET]");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const summary = { dataset: id, choices: [], languages: [], other: null, violations: [], errors: [] };

class Failed extends Error {}
function expect(ok, what) {
  if (!ok) throw new Failed(what);
}

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

// The points the served JSON-stat has for a choice: every area (not a total) with a share
// and a count; its z, when served. Read here from the document, not from the page.
function expected(doc, picks) {
  const dims = doc.id;
  const idx = (d, c) => {
    const i = doc.dimension[d].category.index;
    return Array.isArray(i) ? i.indexOf(c) : (i[c] ?? -1);
  };
  const codes = (d) => {
    const i = doc.dimension[d].category.index;
    return Array.isArray(i) ? i : Object.keys(i).sort((a, b) => i[a] - i[b]);
  };
  const geo = doc.role.geo[0];
  const metric = doc.role.metric[0];
  const value = (at) => {
    let k = 0;
    for (let j = 0; j < dims.length; j++) {
      const p = idx(dims[j], at[dims[j]]);
      if (p < 0) return null;
      k = k * doc.size[j] + p;
    }
    const st = doc.status && (typeof doc.status === "string" ? doc.status : doc.status[k]);
    const v = Array.isArray(doc.value) ? doc.value[k] : doc.value[k];
    return st === "suppressed" || typeof v !== "number" ? null : v;
  };
  const byClass = dims.includes("luokka") ? codes("luokka") : [null];
  const points = [];
  for (const area of codes(geo).filter((a) => a !== "SSS" && a !== "YHT")) {
    for (const cls of byClass) {
      const at = { ...picks, [geo]: area };
      if (cls) at.luokka = cls;
      const get = (m) => value({ ...at, [metric]: m });
      if (get("osuus") === null || get("n") === null || get("n") <= 0) continue;
      points.push({ area, n: get("n"), share: get("osuus"), z: get("z"), cls });
    }
  }
  return points;
}

async function drawn(page) {
  return page.evaluate(() => {
    const svg = document.getElementById("funnel-plot");
    if (!svg) return null;
    const pts = [...svg.querySelectorAll("g.points g.point")].map((g) => ({
      area: g.dataset.area, class: [...g.classList].find((c) => c !== "point"),
      n: Number(g.dataset.n), share: Number(g.dataset.share),
      label: g.querySelector("text.point-label")?.textContent || "",
      shape: g.querySelector(".mark")?.tagName,
    }));
    const rows = [...document.querySelectorAll("#funnel-table tbody tr")].map((tr) => ({
      area: tr.dataset.area, class: tr.dataset.class, said: tr.querySelector("td.class").textContent,
      label: tr.querySelector("th[scope=row]").textContent,
    }));
    const limits = [...svg.querySelectorAll("path.limit")].map((p) => ({
      cls: p.getAttribute("class"), d: (p.getAttribute("d").match(/[ML]/g) || []).length,
      y0: Number(p.getAttribute("d").split(/[ML ]/).filter(Boolean)[1]),
    }));
    const national = svg.querySelector("line.national");
    return {
      points: pts, rows, limits, national: national ? Number(national.getAttribute("y1")) : null,
      title: svg.querySelector("title")?.textContent || "", desc: svg.querySelector("desc")?.textContent || "",
      labelledby: svg.getAttribute("aria-labelledby"), role: svg.getAttribute("role"),
    };
  });
}

async function checkChoice(page, doc, picks) {
  // The selects the page shows hold the choice.
  for (const s of await page.$$eval("#funnel-controls select", (ss) => ss.map((e) => [e.name.replace(/^funnel-/, ""), e.value]))) {
    expect(picks[s[0]] === s[1], `${JSON.stringify(picks)}: select ${s[0]} shows ${s[1]}`);
  }
  const want = expected(doc, picks);
  const seen = await drawn(page);
  const where = JSON.stringify(picks);
  expect(seen, `${where}: no funnel plot`);
  expect(seen.role === "img" && seen.title.length > 0 && seen.desc.length > 0 && seen.labelledby, `${where}: the SVG has no title or description`);
  expect(seen.points.length === want.length && want.length > 0, `${where}: ${seen.points.length} points, ${want.length} areas served`);
  const areas = new Set(seen.points.map((p) => p.area));
  expect(areas.size === seen.points.length, `${where}: an area drawn twice`);
  for (const w of want) {
    const p = seen.points.find((x) => x.area === w.area);
    expect(p, `${where}: ${w.area} not drawn`);
    expect(CLASSES.includes(p.class), `${where}: ${w.area} has class ${p.class}`);
    expect(p.n === w.n && p.share === w.share, `${where}: ${w.area} drawn at ${p.n}, ${p.share}; served ${w.n}, ${w.share}`);
    expect(p.label.length > 0 && p.label !== "", `${where}: ${w.area} has no label`);
    const shape = { poikkeama: "path", tarkkailu: "rect", normaali: "circle" }[p.class];
    expect(p.shape === shape, `${where}: ${w.area} (${p.class}) drawn as ${p.shape}`);
    if (w.cls) expect(p.class === w.cls, `${where}: ${w.area} is ${p.class}, luokka ${w.cls}`);
    else if (w.z !== null) {
      const a = Math.abs(w.z);
      const near = Math.abs(a - 1.96) <= 0.005 || Math.abs(a - 3.09) <= 0.005;
      const cls = a > 3.09 ? "poikkeama" : a > 1.96 ? "tarkkailu" : "normaali";
      expect(near || p.class === cls, `${where}: ${w.area} is ${p.class}, z ${w.z}`);
    }
    const row = seen.rows.find((r) => r.area === w.area);
    expect(row && row.class === p.class && row.said.length > 0 && row.label === p.label, `${where}: table row of ${w.area}: ${JSON.stringify(row)}`);
  }
  expect(seen.rows.length === seen.points.length, `${where}: ${seen.rows.length} table rows`);
  // Four limit curves over the range of n; the upper ones above the national line, the
  // 99.8 % one above the 95 % one (SVG y grows downwards).
  expect(seen.limits.length === 4 && seen.limits.every((l) => l.d > 10), `${where}: limits ${JSON.stringify(seen.limits)}`);
  expect(seen.national !== null, `${where}: no national line`);
  const y = (c) => seen.limits.find((l) => l.cls.includes(c)).y0;
  expect(y("limit998 upper") <= y("limit95 upper") && y("limit95 upper") <= seen.national
    && seen.national <= y("limit95 lower") && y("limit95 lower") <= y("limit998 lower"), `${where}: limits out of order ${JSON.stringify(seen.limits)}`);
  summary.choices.push({ picks, points: seen.points.map(({ area, class: c, n, share }) => ({ area, class: c, n, share })), limits: seen.limits.length, national: seen.national });
}

// The dimensions a funnel plot is chosen by (all but the area, the measure and `luokka`), in
// the document's order, as the page's selects are.
function choiceDims(doc) {
  return doc.id.filter((d) => d !== doc.role.geo[0] && d !== doc.role.metric[0] && d !== "luokka");
}

// Every combination of those dimensions' codes that has points in the served document.
function servedChoices(doc) {
  const dims = choiceDims(doc);
  const codes = (d) => {
    const i = doc.dimension[d].category.index;
    return Array.isArray(i) ? i : Object.keys(i).sort((a, b) => i[a] - i[b]);
  };
  const out = [];
  const walk = (k, picks) => {
    if (k === dims.length) {
      if (expected(doc, picks).length) out.push(picks);
      return;
    }
    for (const c of codes(dims[k])) walk(k + 1, { ...picks, [dims[k]]: c });
  };
  walk(0, {});
  return out;
}

// Every choice of the selects, one after another. A select's options follow the choices
// before it, so the selects are read again after each choice: a dimension with a single
// code with points under the earlier choices has no select (the page takes that code), and
// which dimensions have one depends on those choices (one indicator may have a single
// period, another several). Every combination with points in the served document must be
// reached. Returns the dimensions that had a select for some choice.
async function everyChoice(page, doc) {
  const dims = choiceDims(doc);
  const served = servedChoices(doc);
  const key = (picks) => JSON.stringify(dims.map((d) => picks[d]));
  const reached = new Set();
  const selects = new Set();
  const walk = async (k, picks) => {
    if (k === dims.length) {
      reached.add(key(picks));
      return checkChoice(page, doc, picks);
    }
    const d = dims[k];
    const matches = (p) => Object.entries(picks).every(([e, c]) => p[e] === c);
    const withPoints = [...new Set(served.filter(matches).map((p) => p[d]))];
    const sel = `#funnel-controls select[name="funnel-${d}"]`;
    if (!(await page.$(sel))) {
      expect(withPoints.length === 1, `${JSON.stringify(picks)}: no select for ${d}, served ${JSON.stringify(withPoints)}`);
      return walk(k + 1, { ...picks, [d]: withPoints[0] });
    }
    selects.add(d);
    const options = await page.$$eval(`${sel} option`, (os) => os.map((o) => o.value));
    expect(options.length > 1 && JSON.stringify([...options].sort()) === JSON.stringify([...withPoints].sort()),
      `${JSON.stringify(picks)}: select ${d} offers ${JSON.stringify(options)}, served ${JSON.stringify(withPoints)}`);
    for (const v of options) {
      await page.selectOption(sel, v);
      await walk(k + 1, { ...picks, [d]: v });
    }
  };
  await walk(0, {});
  const missed = served.filter((p) => !reached.has(key(p)));
  expect(missed.length === 0, `choices with points not offered: ${JSON.stringify(missed)}`);
  return [...selects];
}

async function checkFunnel(page) {
  await page.goto(`${base}/?dataset=${id}`);
  await page.waitForSelector(`body[data-ready='${id}']`, { timeout: 20000 }).catch(async () => {
    throw new Failed(`not ready: ${await page.textContent("#hint")}`);
  });
  const doc = await page.evaluate(async (id) => (await fetch(`/api/v1/datasets/${id}`)).json(), id);
  expect(await page.isVisible("#funnel-box"), "the funnel plot is not shown");
  expect(await page.textContent("#funnel-heading") === HEADINGS.fi, "no Finnish heading");
  const selects = await everyChoice(page, doc);
  expect(selects.length >= 1, "no select for the indicator or period");
  // The other languages: the heading, the axis and the selects' labels follow.
  for (const lang of ["sv", "en", "fi"]) {
    await page.click(`header button[data-lang=${lang}]`);
    const heading = await page.textContent("#funnel-heading");
    expect(heading === HEADINGS[lang], `${lang}: heading ${heading}`);
    const seen = await drawn(page);
    expect(seen && seen.points.length > 0, `${lang}: no points`);
    summary.languages.push(lang);
  }
  // The generic table of the page is still there.
  expect(await page.$("#data-table"), "no data table");
  summary.violations = await axe(page);
  const figure = await page.$("#funnel-box");
  await figure.screenshot({ path: path.join(out, `${id}_funnel.png`) });
  // Printed: the plot stays, the selects go.
  await page.emulateMedia({ media: "print" });
  expect(await page.isVisible("#funnel-plot") && !(await page.isVisible("#funnel-controls")), "print: plot hidden or selects shown");
  await page.emulateMedia({ media: "screen" });
}

// A dataset of another shape has no funnel plot, and its page still works.
async function checkOther(page) {
  const other = await page.evaluate(async (id) => {
    const all = (await (await fetch("/api/datasets")).json()).datasets;
    const d = all.find((x) => x.dataset !== id && x.periods.length > 0
      && !["osuus", "n", "odotettu"].every((m) => (x.measures || []).includes(m)));
    return d ? d.dataset : null;
  }, id);
  if (!other) return;
  await page.goto(`${base}/?dataset=${other}`);
  await page.waitForSelector(`body[data-ready='${other}']`, { timeout: 20000 });
  expect(!(await page.isVisible("#funnel-box")) && !(await page.$("#funnel-plot")), `${other}: a funnel plot is shown`);
  expect(await page.$("#data-table"), `${other}: no table`);
  summary.other = other;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  await context.route(`${base}/__axe.js`, (route) => route.fulfill({ path: AXE, contentType: "text/javascript" }));
  const page = await context.newPage();
  page.on("pageerror", (e) => summary.errors.push(`page error: ${e}`));
  page.on("console", (m) => { if (m.type() === "error") summary.errors.push(`console: ${m.text()}`); });
  for (const check of [checkFunnel, checkOther]) {
    try {
      await check(page);
    } catch (e) {
      summary.errors.push(`${check.name}: ${e instanceof Failed ? e.message : e.stack || e}`);
      await page.screenshot({ path: path.join(out, `${id}_funnel-failed.png`), fullPage: true }).catch(() => {});
    }
  }
  for (const v of summary.violations) summary.errors.push(`axe ${v.id} (${v.impact}): ${v.help}; ${v.nodes.join(" | ")}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
process.exitCode = summary.errors.length ? 1 : 0;
