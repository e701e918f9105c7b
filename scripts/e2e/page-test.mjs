// Headless Chromium test of the gateway's page (gateway/ui/index.html), run by
// scripts/gateway-e2e.sh. Types the API key and a text, clicks Classify, waits
// for the result label and checks it. Exit status 0 only when the label matches.
//
// Env: GATEWAY_URL (required), TRIAGE_KEY (required), EXPECT_LABEL (default
// card_arrival), TEXT, SCREENSHOT (png path), CHROMIUM (default
// /usr/bin/chromium), E2E_NODE_DIR (folder whose node_modules has
// playwright-core; default this script's folder).
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
let ok = false;
let page;
try {
  page = await browser.newPage({ viewport: { width: 900, height: 820 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // Failed requests other than the favicon (the gateway serves none) are reported.
  page.on("response", (r) => {
    if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) pageErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });

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
  if (pageErrors.length) console.error("page-test: page errors:\n  " + pageErrors.join("\n  "));
  if (label !== expected) throw new Error(`label ${JSON.stringify(label)} (line ${JSON.stringify(labelLine)}), want ${expected}`);
  if (bars < 1) throw new Error("no score bars rendered");
  console.log(`page-test: OK: ${JSON.stringify(text)} -> ${labelLine} [${meta}], ${bars} score bars`);
  ok = true;
} catch (e) {
  console.error("page-test: FAIL: " + (e && e.message ? e.message : e));
} finally {
  if (shot && page) {
    try {
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`page-test: screenshot ${shot}`);
    } catch (e) {
      console.error("page-test: screenshot failed: " + e.message);
    }
  }
  await browser.close();
}
process.exit(ok ? 0 : 1);
