// The reporting page in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core from engine/web/node_modules): DOM assertions and a screenshot.
//   node tests/web/report.mjs http://127.0.0.1:PORT target/report-page.png
import { createRequire } from "node:module";
import assert from "node:assert/strict";

const require = createRequire(new URL("../../engine/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [base, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(`${base}/?dataset=ensihoito_kuukausi`);
  await page.waitForSelector("body[data-ready='ensihoito_kuukausi']", { timeout: 20000 });

  // Finnish first: the list of indicators, a table of areas by period, a chart.
  assert.equal(await page.textContent("#title"), "Tilastot ja indikaattorit");
  const listed = await page.$$eval("#datasets button", (bs) => bs.map((b) => b.dataset.dataset));
  assert.ok(listed.includes("ensihoito_kuukausi"), listed.join());
  const periods = await page.$$eval("#data-table tr:first-of-type th[scope=col]", (ths) => ths.map((t) => t.textContent));
  assert.deepEqual(periods, ["2025-02", "2025-03"]);
  const rows = await page.$$eval("#data-table th[scope=row]", (ths) => ths.map((t) => t.textContent));
  assert.ok(rows.includes("Koko maa"), rows.join());
  assert.ok(rows.length >= 22, `areas: ${rows.length}`);
  // Two periods: a bar of each area in each period.
  const drawn = await page.evaluate(() => {
    const c = window.Chart.getChart(document.getElementById("chart"));
    return { labels: c.data.labels, series: c.data.datasets.map((d) => d.label) };
  });
  const series = drawn.series;
  assert.ok(drawn.labels.includes("Koko maa") && drawn.labels.length >= 22, drawn.labels.join());
  assert.deepEqual(series, ["2025-02", "2025-03"]);
  // The whole country has a figure in every period.
  const country = await page.$$eval("#data-table tr", (trs) => {
    const tr = trs.find((r) => r.querySelector("th[scope=row]")?.textContent === "Koko maa");
    return [...tr.querySelectorAll("td")].map((td) => td.textContent);
  });
  assert.equal(country.length, 2);
  assert.ok(country.every((v) => /^[0-9]/.test(v)), country.join());

  // A filter changes the figures; the smallest class shows suppressed cells.
  await page.selectOption("select[name=kiireellisyys]", "A");
  const suppressed = await page.$$eval("#data-table td.suppressed .mark", (ms) => ms.map((t) => t.textContent));
  assert.ok(suppressed.length > 0, "no suppressed cells for urgency A");
  assert.ok(suppressed.every((t) => t === ".."));
  // Said in words too, for screen readers.
  const said = await page.$eval("#data-table td.suppressed .visually-hidden", (s) => s.textContent);
  assert.equal(said, "salattu (pieni solu)");
  const gap = await page.evaluate(() => window.Chart.getChart(document.getElementById("chart")).data.datasets.some((d) => d.data.some((v) => v === null)));

  // Swedish and English.
  await page.click("header button[data-lang=sv]");
  assert.equal(await page.textContent("#title"), "Statistik och indikatorer");
  assert.equal(await page.getAttribute("html", "lang"), "sv");
  const svRows = await page.$$eval("#data-table th[scope=row]", (ths) => ths.map((t) => t.textContent));
  assert.ok(svRows.includes("Hela landet"), svRows.join());
  await page.click("header button[data-lang=en]");
  assert.equal(await page.textContent("#title"), "Statistics and indicators");
  const enRows = await page.$$eval("#data-table th[scope=row]", (ths) => ths.map((t) => t.textContent));
  assert.ok(enRows.includes("Whole country"), enRows.join());
  assert.equal(await page.$eval("#data-table td.suppressed", (td) => td.title), "suppressed (small cell)");

  await page.click("header button[data-lang=fi]");
  await page.screenshot({ path: shot, fullPage: true });
  assert.deepEqual(errors, []);
  console.log(JSON.stringify({ periods, areas: rows.length, series: series.length, suppressed: suppressed.length, gap }));
} finally {
  await browser.close();
}
