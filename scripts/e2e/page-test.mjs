// Headless Chromium test of the gateway's page (gateway/ui/index.html), run by
// scripts/gateway-e2e.sh.
//   1. Classify view: types the API key and a text, clicks Classify, waits for
//      the result label and checks it (screenshot: SCREENSHOT).
//   2. Drift view (#drift, GET /v1/drift): waits until the stream of
//      DRIFT_MODEL on DRIFT_TOPIC shows at least one window and its "current alerts" box a drift alert,
//      then checks that the charts were drawn (SVG paths), the alerts box lists
//      alerts, and the drifting-windows table and the reference are there
//      (screenshot: DRIFT_SCREENSHOT). The caller must have produced traffic
//      whose latest window drifts (gateway-e2e.sh sends out-of-domain text last).
// The page must not trip its Content-Security-Policy. Exit status 0 only when
// every check passes.
//
// Env: GATEWAY_URL (required), TRIAGE_KEY (required), EXPECT_LABEL (default
// card_arrival), TEXT, SCREENSHOT (png path), DRIFT_SCREENSHOT (png path),
// DRIFT_MODEL (default support), DRIFT_TOPIC (default triage.support-queries), DRIFT_TIMEOUT (seconds, default 120),
// CHROMIUM (default /usr/bin/chromium), E2E_NODE_DIR (folder whose
// node_modules has playwright-core; default this script's folder).
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(process.env.E2E_NODE_DIR || here, "package.json"));
const { chromium } = require("playwright-core");

const base = process.env.GATEWAY_URL;
const key = process.env.TRIAGE_KEY;
const expected = process.env.EXPECT_LABEL || "card_arrival";
const text = process.env.TEXT || "I am still waiting on my card";
const shot = process.env.SCREENSHOT || "";
const driftShot = process.env.DRIFT_SCREENSHOT || "";
const driftModel = process.env.DRIFT_MODEL || "support";
const driftTopic = process.env.DRIFT_TOPIC || "triage.support-queries";
const driftTimeout = Number(process.env.DRIFT_TIMEOUT || 120) * 1000;
if (!base || !key) {
  console.error("page-test: GATEWAY_URL and TRIAGE_KEY are required");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

async function screenshot(page, file) {
  if (!file || !page) return;
  try {
    await page.screenshot({ path: file, fullPage: true });
    console.log(`page-test: screenshot ${file}`);
  } catch (e) {
    console.error("page-test: screenshot failed: " + e.message);
  }
}

let ok = false;
let page;
let stage = "classify";
let classifyShot = false;
const pageErrors = [];
const cspViolations = [];
try {
  page = await browser.newPage({ viewport: { width: 900, height: 820 } });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  // Failed requests other than the favicon (the gateway serves none) are reported.
  page.on("response", (r) => {
    if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) pageErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });

  // --- 1. classify -------------------------------------------------------------
  const resp = await page.goto(base + "/", { waitUntil: "load", timeout: 20000 });
  if (!resp || resp.status() !== 200) throw new Error(`GET / answered ${resp && resp.status()}`);

  await page.fill("#key", key);
  await page.dispatchEvent("#key", "change"); // the page saves the key and loads models on change
  // The model list fills from GET /v1/models; wait for it, then pick the support model.
  await page.waitForFunction(() => {
    const s = document.getElementById("model");
    return s && Array.from(s.options).some((o) => o.value === "support");
  }, null, { timeout: 15000 });
  await page.selectOption("#model", "support");
  await page.fill("#text", text);
  await page.click("#classify");

  // Either a result or an error message appears.
  await page.waitForFunction(() => {
    const r = document.getElementById("result");
    const e = document.getElementById("error");
    return (r && !r.hidden && document.getElementById("res-label").textContent.trim() !== "") ||
      (e && e.textContent.trim() !== "");
  }, null, { timeout: 20000 });

  const err = (await page.textContent("#error")).trim();
  if (err) throw new Error(`page shows an error: ${err}`);
  const labelLine = (await page.textContent("#res-label")).trim();
  const meta = (await page.textContent("#res-meta")).trim();
  const bars = await page.locator("#bars .bar").count();
  const label = labelLine.split(" \u2014 ")[0].trim();
  if (label !== expected) throw new Error(`label ${JSON.stringify(label)} (line ${JSON.stringify(labelLine)}), want ${expected}`);
  if (bars < 1) throw new Error("no score bars rendered");
  console.log(`page-test: OK: ${JSON.stringify(text)} -> ${labelLine} [${meta}], ${bars} score bars`);
  await screenshot(page, shot);
  classifyShot = true;

  // --- 2. drift view -------------------------------------------------------------
  stage = "drift";
  await page.setViewportSize({ width: 1100, height: 900 });
  await page.click("#tab-drift");
  const sel = `section.stream[data-model="${driftModel}"][data-topic="${driftTopic}"]`;
  const t0 = Date.now();
  try {
    // The view refreshes itself every 5 s: no reload needed while windows fill.
    await page.waitForFunction((sel) => {
      const s = document.querySelector(sel);
      const a = s && s.querySelector(".alerts");
      return s && Number(s.dataset.windows) >= 1 && a && a.dataset.drift === "true";
    }, sel, { timeout: driftTimeout, polling: 500 });
  } catch (e) {
    const msg = ((await page.textContent("#drift-msg").catch(() => "")) || "").trim();
    const streams = await page.$$eval("section.stream", (ss) => ss.map((s) =>
      `${s.dataset.model}/${s.dataset.topic}: ${s.dataset.windows} windows, alerts box ${(s.querySelector(".alerts") || {}).className || "none"}`));
    throw new Error(`drift view: no ${driftModel}/${driftTopic} window with a drift alert within ${driftTimeout / 1000}s ` +
      `(streams: ${streams.join("; ") || "none"}${msg ? "; notice: " + msg : ""})`);
  }
  const d = await page.$eval(sel, (s) => {
    const charts = Array.from(s.querySelectorAll("figure.chart")).filter((f) => f.querySelector("svg.plot"));
    const paths = Array.from(s.querySelectorAll("figure.chart svg.plot path")).filter((p) => (p.getAttribute("d") || "").length > 2);
    return {
      topic: s.dataset.topic,
      windows: Number(s.dataset.windows),
      charts: charts.length,
      chartsWithPaths: charts.filter((f) => f.querySelector("svg.plot path.ln, svg.plot circle")).length,
      shares: s.querySelectorAll(".shares .track").length,
      paths: paths.length,
      lines: s.querySelectorAll("svg.plot path.ln").length,
      thresholds: s.querySelectorAll("svg.plot path.th").length,
      bands: s.querySelectorAll("svg.plot path.band").length,
      alerts: Array.from(s.querySelectorAll(".alerts ul.chips li")).map((li) => li.textContent.trim()),
      alertsState: s.querySelector(".alerts").className,
      driftRows: s.querySelectorAll(".lower table")[0] ? s.querySelectorAll(".lower table")[0].querySelectorAll("tbody tr").length : 0,
      reference: Array.from(s.querySelectorAll("dl.kv dt")).map((x) => x.textContent.trim()),
      titles: charts.map((f) => f.querySelector("figcaption span").textContent.trim()),
    };
  });
  if (d.charts < 5) throw new Error(`drift view: ${d.charts} charts, want at least 5 (${d.titles.join(", ")})`);
  if (d.chartsWithPaths < d.charts) throw new Error(`drift view: only ${d.chartsWithPaths} of ${d.charts} charts drew a series`);
  if (d.paths < d.charts) throw new Error(`drift view: ${d.paths} SVG paths for ${d.charts} charts`);
  if (d.alerts.length < 1 || !/\bdrift\b/.test(d.alertsState)) throw new Error(`drift view: alerts box ${d.alertsState} lists ${d.alerts.length} alerts`);
  if (d.driftRows < 1) throw new Error("drift view: the drifting-windows table is empty");
  if (d.reference.length < 5) throw new Error(`drift view: reference summary has ${d.reference.length} entries`);
  console.log(`page-test: drift OK after ${((Date.now() - t0) / 1000).toFixed(1)}s: ${driftModel} on ${d.topic}: ${d.windows} windows, ` +
    `${d.charts} charts (${d.titles.join(", ")}), ${d.paths} SVG paths (${d.lines} series, ${d.thresholds} threshold, ${d.bands} band), ` +
    `${d.shares} label-share bars, ` +
    `current alerts [${d.alerts.join("; ")}], ${d.driftRows} drifting windows listed`);
  if (cspViolations.length) throw new Error("Content-Security-Policy violations:\n  " + cspViolations.join("\n  "));
  ok = true;
} catch (e) {
  console.error(`page-test: FAIL (${stage}): ` + (e && e.message ? e.message : e));
} finally {
  if (pageErrors.length) console.error("page-test: page errors:\n  " + pageErrors.join("\n  "));
  if (!classifyShot) await screenshot(page, shot);
  if (stage === "drift") await screenshot(page, driftShot);
  await browser.close();
}
process.exit(ok ? 0 : 1);
