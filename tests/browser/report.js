// Opens a wsnoop report in Debian's chromium and says what a person would see, as JSON on
// stdout: for tests/report.rs, which compares it with wsnoop's --json of the same capture.
//
//   node report.js JOBS.json
//
// JOBS.json: a list of {"page": "x.html", "shot": "x.png", "flows": [N, ...],
// "filters": [[N, "regex"], ...], "scroll": N, "sort": ["dur", ...], "kinds": N, "details": [[N, index], ...],
// "hash": "#flow-N"}, one page each, in one browser;
// the output is the list of what each page showed. flows: connections to click, each time counting the messages shown; filters: a connection
// and a regular expression to type into the filter box; scroll: a connection whose message
// list is scrolled to its end (windowing: the last rows must be there, and few rows in all).
"use strict";
const { chromium } = require("playwright-core");
const { pathToFileURL } = require("url");

async function main() {
  const jobs = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const results = [];
  try {
    for (const spec of jobs) results.push(await look(browser, spec));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

async function look(browser, spec) {
  const out = { requests: [], errors: [], flows: [], clicked: {}, filters: [], timeline: {} };
  const page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
  try {
    const file = pathToFileURL(spec.page).href, url = file + (spec.hash || "");
    page.on("request", (r) => { if (r.url() !== file && r.url() !== url) out.requests.push(r.url()); });
    page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") out.errors.push(m.type() + ": " + m.text()); });
    page.on("pageerror", (e) => out.errors.push("pageerror: " + e.message));
    await page.goto(url, { waitUntil: "load" });
    out.flows = await page.$$eval('[data-testid="connection"]', (rows) => rows.map((r) => Number(r.getAttribute("data-flow"))));
    const shown = async () => ({
      count: Number(await page.getAttribute('[data-testid="message-count"]', "data-count")),
      rows: await page.$$eval('[data-testid="message"]', (rows) => rows.map((r) => Number(r.getAttribute("data-index")))),
    });
    for (const flow of spec.flows || []) {
      await page.click(`[data-testid="connection"][data-flow="${flow}"]`);
      out.clicked[flow] = await shown();
    }
    for (const [flow, regex] of spec.filters || []) {
      await page.click(`[data-testid="connection"][data-flow="${flow}"]`);
      await page.fill('[data-testid="filter"]', regex);
      await page.press('[data-testid="filter"]', "Enter");
      out.filters.push({ flow, regex, ...(await shown()) });
      await page.fill('[data-testid="filter"]', "");
      await page.press('[data-testid="filter"]', "Enter");
    }
    if (spec.scroll !== undefined) {
      await page.click(`[data-testid="connection"][data-flow="${spec.scroll}"]`);
      const before = await shown();
      await page.$eval("#viewport", (v) => { v.scrollTop = v.scrollHeight; v.dispatchEvent(new Event("scroll")); });
      await page.waitForTimeout(50);
      out.scrolled = { before, after: await shown() };
    }
    // sort: column keys whose headers are clicked in turn; the rows' order after each.
    out.sorted = [];
    for (const col of spec.sort || []) {
      await page.click(`#conn-head th[data-col="${col}"]`);
      out.sorted.push(await page.$$eval('#conn-body [data-testid="connection"]',
        (rows) => rows.map((r) => Number(r.getAttribute("data-flow")))));
    }
    // kinds: a connection whose messages are counted under All, Sent, Received and Control.
    if (spec.kinds !== undefined) {
      await page.click(`[data-testid="connection"][data-flow="${spec.kinds}"]`);
      out.kinds = {};
      for (const kind of ["send", "receive", "control", "all"]) {
        await page.click(`#kinds [data-kind="${kind}"]`);
        out.kinds[kind] = await shown();
      }
    }
    // details: [flow, index] pairs: the message's detail, pretty-printed when it is JSON.
    out.details = [];
    for (const [flow, index] of spec.details || []) {
      await page.click(`[data-testid="connection"][data-flow="${flow}"]`);
      await page.click(`[data-testid="message"][data-index="${index}"]`);
      const pretty = await page.isVisible("#pretty");
      if (pretty) await page.click("#pretty");
      out.details.push({ flow, index, pretty, text: await page.textContent("#detail-body") });
    }
    out.timeline = await page.$eval('[data-testid="timeline"]', (t) => ({
      svg: t.querySelectorAll("svg").length,
      elements: t.querySelectorAll("svg *").length,
      gantt: t.querySelectorAll("rect.gantt").length,
      bins: t.querySelectorAll("rect.bin").length,
      markers: t.querySelectorAll(".marker").length,
      rtt: t.querySelectorAll("circle.rtt").length,
    }));
    out.findings = await page.$$eval('[data-testid="finding"]', (f) => f.map((x) => x.getAttribute("data-kind")));
    // Each finding's links to its example connections: where a click on each one leads.
    out.links = [];
    const links = await page.$$("[data-flow-link]");
    for (const link of links) {
      await link.click();
      out.links.push({
        to: Number(await link.getAttribute("data-flow-link")),
        selected: Number(await page.getAttribute('tr.selected[data-testid="connection"]', "data-flow")),
      });
    }
    if (spec.shot) await page.screenshot({ path: spec.shot, fullPage: true });
  } finally {
    await page.close();
  }
  return out;
}

main().catch((e) => { console.error(e); process.exit(1); });
