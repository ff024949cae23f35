// A real WebSocket session in headless Chromium, captured by tcpdump, and what DevTools saw
// of it, for tests/har.rs. Run inside a private network namespace (its loopback only):
//
//   node har_session.js OUTDIR PORT PYTHON
//
// Writes OUTDIR/capture.pcap (tcpdump on lo, port PORT), OUTDIR/chrome.har (the DevTools
// protocol's Network.webSocket* events made into a HAR entry as DevTools' own export does:
// NetworkRequest frames, times as its pseudo wall time) and OUTDIR/sent.json (what the page
// sent). The page is served from PORT+1, the python websockets echo server listens on PORT.
"use strict";
const { chromium } = require("playwright-core");
const { spawn } = require("child_process");
const fs = require("fs");
const http = require("http");
const path = require("path");

const WAIT_MS = 15000;

function waitFor(child, stream, pattern, what) {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(what + " did not start: " + seen)), WAIT_MS);
    child[stream].on("data", (d) => {
      seen += d.toString();
      if (pattern.test(seen)) { clearTimeout(timer); resolve(); }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(what + " exited " + code + ": " + seen)); });
  });
}

function exited(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => { child.kill("SIGKILL"); resolve(); }, WAIT_MS);
    child.on("exit", () => { clearTimeout(timer); resolve(); });
  });
}

// What the page sends, in order; the server echoes each. Binary as base64 here.
const SENT = [
  { text: "hello from chromium" },
  { text: "h\u00e9llo w\u00f6rld \u2713 \ud83d\ude00" },
  { text: JSON.stringify({ type: "chat", id: 7, body: "json \"quoted\" </script>" }) },
  { binary: Buffer.from([0, 1, 2, 253, 254, 255]).toString("base64") },
  { text: "x".repeat(70000) },
  { binary: Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 255)).toString("base64") },
  { text: "" },
];

async function main() {
  const [outdir, portText, python] = process.argv.slice(2);
  const port = Number(portText);
  const children = [];
  let browser = null;
  const web = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end("<!DOCTYPE html><title>wsnoop har test</title><p>session</p>");
  });
  try {
    const tcpdump = spawn("tcpdump", ["-i", "lo", "--immediate-mode", "-U", "-s", "0", "-w", path.join(outdir, "capture.pcap"),
      "tcp", "port", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
    children.push(tcpdump);
    let tcpdumpSaid = "";
    tcpdump.stderr.on("data", (d) => { tcpdumpSaid += d.toString(); });
    await waitFor(tcpdump, "stderr", /listening on/, "tcpdump");
    const server = spawn(python, [path.join(__dirname, "echo_server.py"), "--port", String(port)],
      { stdio: ["ignore", "pipe", "inherit"] });
    children.push(server);
    await waitFor(server, "stdout", /ready/, "the echo server");
    await new Promise((resolve) => web.listen(port + 1, "127.0.0.1", resolve));

    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    const page = await browser.newPage();
    const cdp = await page.context().newCDPSession(page);
    const events = [];
    for (const name of ["webSocketCreated", "webSocketWillSendHandshakeRequest",
      "webSocketHandshakeResponseReceived", "webSocketFrameSent", "webSocketFrameReceived",
      "webSocketFrameError", "webSocketClosed"]) {
      cdp.on("Network." + name, (params) => events.push({ name, params }));
    }
    await cdp.send("Network.enable");
    await page.goto(`http://127.0.0.1:${port + 1}/`);
    await page.evaluate(async ({ url, sent }) => {
      const ws = new WebSocket(url, ["chat.v1"]);
      ws.binaryType = "arraybuffer";
      let echoes = 0;
      const all = new Promise((resolve, reject) => {
        ws.onmessage = () => { if (++echoes === sent.length) resolve(); };
        ws.onerror = () => reject(new Error("websocket error"));
      });
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("no open")); });
      for (const m of sent) {
        // One at a time, each after its echo, so both sides' order is the same everywhere.
        const before = echoes;
        if (m.text !== undefined) ws.send(m.text);
        else ws.send(Uint8Array.from(atob(m.binary), (c) => c.charCodeAt(0)));
        while (echoes === before) await new Promise((r) => setTimeout(r, 5));
      }
      await all;
      await new Promise((resolve) => { ws.onclose = resolve; ws.close(1000, "bye"); });
    }, { url: `ws://127.0.0.1:${port}/chat?room=1`, sent: SENT });
    // The closing handshake's events and the FINs.
    const until = Date.now() + WAIT_MS;
    while (!events.some((e) => e.name === "webSocketClosed") && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await browser.close();
    browser = null;
    await exited(server);
    // Packets still in the kernel's buffer when tcpdump stops are lost: let it take them.
    await new Promise((r) => setTimeout(r, 1000));
    tcpdump.kill("SIGINT");
    await exited(tcpdump);
    fs.writeFileSync(path.join(outdir, "tcpdump.txt"), tcpdumpSaid);
    fs.writeFileSync(path.join(outdir, "chrome.har"), JSON.stringify(har(events), null, 1));
    fs.writeFileSync(path.join(outdir, "sent.json"), JSON.stringify(SENT));
  } finally {
    if (browser) await browser.close();
    web.close();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }
}

// DevTools' HAR export of a WebSocket request (front_end/models/har/HARFormat and
// NetworkRequest): the handshake's headers, and each frame as {type, time, opcode, data} with
// time = the handshake's wall time plus the frame's monotonic time since it.
function har(events) {
  const entries = new Map();
  const entry = (id) => {
    if (!entries.has(id)) entries.set(id, { _resourceType: "websocket", request: {}, response: {}, _webSocketMessages: [] });
    return entries.get(id);
  };
  const clock = new Map();
  const headers = (h) => Object.entries(h || {}).flatMap(([name, value]) =>
    String(value).split("\n").map((v) => ({ name, value: v })));
  for (const { name, params } of events) {
    const e = entry(params.requestId);
    if (name === "webSocketCreated") e.request.url = params.url;
    if (name === "webSocketWillSendHandshakeRequest") {
      clock.set(params.requestId, [params.wallTime, params.timestamp]);
      e.startedDateTime = new Date(params.wallTime * 1000).toISOString();
      e.request.method = "GET";
      e.request.headers = headers(params.request.headers);
    }
    if (name === "webSocketHandshakeResponseReceived") {
      const r = params.response;
      e.response.status = r.status;
      e.response.statusText = r.statusText;
      e.response.headers = headers(r.headers);
      // The headers as sent, when the network service reports them (DevTools prefers them).
      if (r.requestHeaders) e.request.headers = headers(r.requestHeaders);
    }
    if (name === "webSocketFrameSent" || name === "webSocketFrameReceived") {
      const [wall, mono] = clock.get(params.requestId) || [0, 0];
      e._webSocketMessages.push({
        type: name === "webSocketFrameSent" ? "send" : "receive",
        time: wall + (params.timestamp - mono),
        opcode: params.response.opcode,
        data: params.response.payloadData,
      });
    }
  }
  return { log: { version: "1.2", creator: { name: "WebInspector", version: "537.36" }, pages: [], entries: [...entries.values()] } };
}

main().catch((e) => { console.error(e); process.exit(1); });
