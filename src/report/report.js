// wsnoop's report page: everything is drawn here from the JSON block above, with no library
// and no request. Message rows are windowed: only those in view (and a margin) are in the DOM.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("wsnoop-data").textContent);
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const ROW = 20, MARGIN_ROWS = 40;
  const F = { TRUNCATED: 1, COMPRESSED: 2, INCOMPLETE: 4, UNDECODABLE: 8, PARTIAL: 16, DROPPED: 32, BASE64: 64 };
  const OPS = { 0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong" };
  const opName = (op) => OPS[op] || "reserved-" + op;
  const conns = D.conns;
  const byFlow = new Map(conns.map((c) => [c.flow, c]));

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clock(epoch) {
    if (epoch === null || epoch === undefined) return "";
    const d = new Date(epoch * 1000);
    return d.toISOString().slice(11, 23);
  }
  function day(epoch) { return new Date(epoch * 1000).toISOString().slice(0, 10); }
  function secs(s) {
    if (s === null || s === undefined) return "";
    if (s < 1) return (s * 1000).toFixed(1) + " ms";
    return s.toFixed(s < 100 ? 2 : 0) + " s";
  }
  function bytes(n) {
    if (n === null || n === undefined) return "";
    if (n < 1024) return n + " B";
    if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function b64bytes(s) {
    const bin = atob(s), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function utf8(u8) { return new TextDecoder("utf-8", { fatal: false }).decode(u8); }

  // --- header and findings -------------------------------------------------------------
  $("meta").textContent = D.source + " \u2014 " + conns.length + " connections, written " +
    D.generated.replace("T", " ").replace("Z", " UTC") + " by wsnoop " + D.version;
  if (D.cuts) { $("cuts").hidden = false; $("cuts").textContent = "Not everything was kept: " + D.cuts + "."; }
  $("footer").textContent = "Bounds: " + D.limits.messagesPerConnection + " messages per connection, " +
    D.limits.messages + " in all, " + bytes(D.limits.payloadBytes) + " of payload, " +
    D.limits.connections + " connections; payloads as cut at --max-payload.";
  for (const f of D.findings) {
    const li = el("li", { class: f.severity, "data-testid": "finding", "data-kind": f.kind });
    li.append(el("span", { class: "sev" }, f.severity === "info" ? "ok" : f.severity));
    li.append(el("b", null, f.kind + ": "), document.createTextNode(f.detail + " "));
    for (const flow of f.flows) {
      if (!byFlow.has(flow)) continue;
      const a = el("a", { href: "#flow-" + flow, "data-flow-link": flow }, "#" + flow);
      a.addEventListener("click", (ev) => { ev.preventDefault(); select(flow, true); });
      li.append(a, document.createTextNode(" "));
    }
    li.append(el("div", { class: "advice" }, "\u2192 " + f.advice));
    $("findings").append(li);
  }
  if (!D.findings.length) $("findings").append(el("li", null, "No findings."));

  // --- connections ---------------------------------------------------------------------
  function closeText(c) {
    const parts = [];
    if (c.close) {
      const who = c.close.initiator === 0 ? "client" : c.close.initiator === 1 ? "server" : "";
      if (c.close.code !== null) parts.push(c.close.code + (who ? " by " + who : ""));
      else if (who) parts.push("close by " + who);
      if (c.close.clean) parts.push("clean");
      else if (!c.close.replied && c.close.initiator >= 0) parts.push("unanswered");
    }
    if (c.endReason) parts.push(c.endReason);
    return parts.join(", ");
  }
  const COLS = [
    ["flow", "#", (c) => c.flow, true],
    ["client", "Client", (c) => c.client],
    ["server", "Server", (c) => c.server],
    ["uri", "URI", (c) => c.uri || (c.midstream ? "(mid-stream)" : "")],
    ["protocol", "Subprotocol", (c) => c.protocol || ""],
    ["ext", "Extensions", (c) => (c.extensions || []).join(", ")],
    ["status", "Status", (c) => (c.status === null ? "" : c.status), true],
    ["start", "Start", (c) => c.start, false, (c) => day(c.start) + " " + clock(c.start)],
    ["dur", "Duration", (c) => (c.end === null ? -1 : c.end - c.t0), true, (c) => (c.end === null ? "" : secs(c.end - c.t0))],
    ["ms", "Msgs \u2191", (c) => c.messages[0], true],
    ["mr", "Msgs \u2193", (c) => c.messages[1], true],
    ["bs", "Bytes \u2191", (c) => (c.bytes ? c.bytes[0] : -1), true, (c) => (c.bytes ? bytes(c.bytes[0]) : "")],
    ["br", "Bytes \u2193", (c) => (c.bytes ? c.bytes[1] : -1), true, (c) => (c.bytes ? bytes(c.bytes[1]) : "")],
    ["rtt", "Ping RTT", (c) => (c.pingRtt === null ? -1 : c.pingRtt), true, (c) => secs(c.pingRtt)],
    ["close", "Closed", closeText],
    ["anom", "Anomalies", (c) => c.anomalies.length + c.anomaliesNotKept, true, (c) => {
      const n = c.anomalies.length + c.anomaliesNotKept;
      if (!n) return "";
      const kinds = [...new Set(c.anomalies.map((a) => a[2]))];
      return n + " (" + kinds.slice(0, 3).join(", ") + (kinds.length > 3 ? ", \u2026" : "") + ")";
    }],
  ];
  let sortCol = 0, sortDesc = false, selected = null;
  const rows = new Map();
  COLS.forEach((col, i) => {
    const th = el("th", { "data-col": col[0] }, col[1]);
    th.addEventListener("click", () => {
      if (sortCol === i) sortDesc = !sortDesc; else { sortCol = i; sortDesc = false; }
      renderConnections();
    });
    $("conn-head").append(th);
  });
  for (const c of conns) {
    const tr = el("tr", { "data-testid": "connection", "data-flow": c.flow, id: "flow-" + c.flow });
    for (const col of COLS) {
      const text = String((col[4] || col[2])(c));
      const td = el("td", col[3] ? { class: "num" } : { title: text }, text);
      tr.append(td);
    }
    const status = tr.children[6];
    status.className += c.upgraded ? " ok" : " bad";
    if (c.anomalies.length) tr.lastChild.className += " bad";
    tr.addEventListener("click", () => select(c.flow, false));
    rows.set(c.flow, tr);
  }
  function renderConnections() {
    const key = COLS[sortCol][2];
    const list = conns.slice().sort((a, b) => {
      const x = key(a), y = key(b);
      const r = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return (sortDesc ? -r : r) || a.flow - b.flow;
    });
    const body = $("conn-body");
    const frag = document.createDocumentFragment();
    for (const c of list) frag.append(rows.get(c.flow));
    body.replaceChildren(frag);
    [...$("conn-head").children].forEach((th, i) => {
      th.className = i === sortCol ? "sorted" + (sortDesc ? " desc" : "") : "";
    });
  }
  $("conn-count").textContent = "(" + conns.length + ")";

  // --- messages ------------------------------------------------------------------------
  let kind = "all", matcher = null, shown = [], chosen = -1;
  // What the filter searches: the text, or the payload in base64 as DevTools and HAR show
  // binary messages.
  const dataText = (c, it) => it[6];
  // Math.max(...list) fails past the engine's argument limit: 100,000 messages pass it.
  function maxOf(init, list, f) {
    let m = init;
    for (const v of list) { const y = f(v); if (y > m) m = y; }
    return m;
  }
  function closeLabel(it) {
    const b = it[5] & F.BASE64 ? b64bytes(it[6]) : new TextEncoder().encode(it[6]);
    const reason = b.length > 2 ? utf8(b.subarray(2)) : "";
    return (it[7] === null ? "(no code)" : it[7]) + (reason ? " " + reason : "");
  }
  function makeMatcher(text) {
    if (!text) return null;
    try { const re = new RegExp(text, "i"); return (s) => re.test(s); }
    catch (e) { const t = text.toLowerCase(); return (s) => s.toLowerCase().includes(t); }
  }
  function applyFilter() {
    const c = selected === null ? null : byFlow.get(selected);
    shown = [];
    if (c) {
      const items = c.items;
      for (let i = 0; i < items.length; i++) {
        const it = items[i];
        const control = it[2] >= 8;
        if (kind === "send" && it[1] !== 0) continue;
        if (kind === "receive" && it[1] !== 1) continue;
        if (kind === "control" && !control) continue;
        if (matcher && !matcher(dataText(c, it))) continue;
        shown.push(i);
      }
    }
    const total = c ? c.items.length : 0;
    $("message-count").textContent = shown.length + " of " + total + " shown" +
      (c && c.notKept ? ", " + c.notKept + " not kept" : "");
    $("message-count").setAttribute("data-count", shown.length);
    $("spacer").style.height = shown.length * ROW + "px";
    $("viewport").scrollTop = 0;
    renderWindow(true);
  }
  let lastFirst = -1, lastLast = -1;
  function renderWindow(force) {
    const vp = $("viewport"), spacer = $("spacer");
    const first = Math.max(0, Math.floor(vp.scrollTop / ROW) - MARGIN_ROWS);
    const last = Math.min(shown.length, Math.ceil((vp.scrollTop + vp.clientHeight) / ROW) + MARGIN_ROWS);
    if (!force && first === lastFirst && last === lastLast) return;
    lastFirst = first; lastLast = last;
    const c = byFlow.get(selected);
    const frag = document.createDocumentFragment();
    for (let k = first; k < last; k++) frag.append(messageRow(c, shown[k], k));
    spacer.replaceChildren(frag);
  }
  function messageRow(c, i, k) {
    const it = c.items[i];
    const dir = it[1] === 0 ? "send" : "receive";
    const control = it[2] >= 8;
    const row = el("div", { class: "msg-row " + dir + (control ? " control" : "") + (i === chosen ? " selected" : ""),
      "data-testid": "message", "data-index": i, "data-dir": dir, "data-opcode": it[2] });
    row.style.top = k * ROW + "px";
    const len = it[3] === it[4] ? String(it[3]) : it[3] + " (" + it[4] + " wire)";
    const flags = [];
    if (it[5] & F.COMPRESSED) flags.push("deflate");
    if (it[5] & F.TRUNCATED) flags.push("cut");
    if (it[5] & F.INCOMPLETE) flags.push("incomplete");
    if (it[5] & F.UNDECODABLE) flags.push("undecodable");
    if (it[5] & F.PARTIAL) flags.push("partial");
    if (it[5] & F.DROPPED) flags.push("not kept");
    const shownData = control && it[2] === 8 ? closeLabel(it) : it[5] & F.BASE64 ? "[" + it[3] + " bytes] " + it[6] : it[6];
    row.append(el("span", { class: "c-dir" }, dir === "send" ? "\u2191" : "\u2193"),
      el("span", { class: "c-time" }, clock(c.t0 + it[0])),
      el("span", { class: "c-rel" }, it[0].toFixed(3)),
      el("span", { class: "c-op" }, opName(it[2])),
      el("span", { class: "c-len" + (flags.length ? " flagged" : ""), title: flags.join(", ") }, len + (flags.length ? " *" : "")),
      el("span", { class: "c-data" }, shownData.length > 300 ? shownData.slice(0, 300) + "\u2026" : shownData));
    row.addEventListener("click", () => showDetail(c, i));
    return row;
  }
  function hexdump(u8) {
    const lines = [];
    for (let off = 0; off < u8.length; off += 16) {
      const chunk = u8.subarray(off, off + 16);
      let hex = "", ascii = "";
      for (let j = 0; j < 16; j++) {
        hex += j < chunk.length ? chunk[j].toString(16).padStart(2, "0") + " " : "   ";
        if (j === 7) hex += " ";
        if (j < chunk.length) ascii += chunk[j] >= 32 && chunk[j] < 127 ? String.fromCharCode(chunk[j]) : ".";
      }
      lines.push(off.toString(16).padStart(8, "0") + "  " + hex + " |" + ascii + "|");
    }
    return lines.join("\n");
  }
  let detailText = "";
  function showDetail(c, i) {
    chosen = i;
    const it = c.items[i];
    $("detail").hidden = false;
    const flagNames = Object.keys(F).filter((k) => k !== "BASE64" && it[5] & F[k]).map((k) => k.toLowerCase());
    $("detail-title").textContent = (it[1] === 0 ? "\u2191 sent " : "\u2193 received ") + opName(it[2]) +
      " at " + clock(c.t0 + it[0]) + " (+" + it[0].toFixed(6) + " s), " + it[3] + " bytes" +
      (it[3] !== it[4] ? ", " + it[4] + " on the wire" : "") + (flagNames.length ? " [" + flagNames.join(", ") + "]" : "");
    let body;
    if (it[5] & F.BASE64) {
      const u8 = b64bytes(it[6]);
      body = (it[2] === 8 ? "close " + closeLabel(it) + "\n\n" : "") + hexdump(u8);
      detailText = "";
    } else {
      body = it[6];
      detailText = it[6];
    }
    $("detail-body").textContent = body;
    let json = false;
    if (detailText) { try { const v = JSON.parse(detailText); json = typeof v === "object" && v !== null; } catch (e) { json = false; } }
    $("pretty").hidden = !json;
    renderWindow(true);
  }
  $("pretty").addEventListener("click", () => {
    $("detail-body").textContent = JSON.stringify(JSON.parse(detailText), null, 2);
  });
  $("close-detail").addEventListener("click", () => { $("detail").hidden = true; chosen = -1; renderWindow(true); });
  $("viewport").addEventListener("scroll", () => renderWindow(false), { passive: true });
  let filterTimer = 0;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { matcher = makeMatcher($("filter").value); applyFilter(); }, 60);
  });
  $("filter").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { clearTimeout(filterTimer); matcher = makeMatcher($("filter").value); applyFilter(); }
  });
  for (const b of $("kinds").children) {
    b.addEventListener("click", () => {
      kind = b.getAttribute("data-kind");
      for (const o of $("kinds").children) o.classList.toggle("on", o === b);
      applyFilter();
    });
  }

  // --- timeline ------------------------------------------------------------------------
  const W = 1000;
  function drawTimeline() {
    const box = $("timeline");
    const width = Math.max(600, box.clientWidth || W);
    const left = 110, right = 10, plotW = width - left - right;
    const t0 = -maxOf(-Infinity, conns, (c) => -c.start);
    let t1 = maxOf(t0 + 0.001, conns, (c) => (c.end === null ? c.start : c.end));
    for (const c of conns) if (c.items.length) t1 = Math.max(t1, c.t0 + c.items[c.items.length - 1][0]);
    const x = (t) => left + ((t - t0) / (t1 - t0)) * plotW;
    const lanes = Math.min(conns.length, 60);
    const laneH = lanes > 30 ? 4 : 8;
    const ganttH = lanes * (laneH + 2) + 24;
    const c = selected === null ? null : byFlow.get(selected);
    const chartH = c ? 210 : 0;
    const s = svg("svg", { viewBox: "0 0 " + width + " " + (ganttH + chartH), width: width, height: ganttH + chartH,
      role: "img", "aria-label": "timeline" });
    s.append(svg("text", { x: 4, y: 12 }, "connections"));
    s.append(svg("text", { x: left, y: 12 }, day(t0) + " " + clock(t0)));
    s.append(svg("text", { x: width - right, y: 12, "text-anchor": "end" }, clock(t1) + " (" + secs(t1 - t0) + ")"));
    conns.forEach((cn, i) => {
      const lane = i % lanes, y = 18 + lane * (laneH + 2);
      const end = cn.end === null ? t1 : cn.end;
      const bar = svg("rect", { x: x(cn.start), y: y, width: Math.max(1.5, x(end) - x(cn.start)), height: laneH,
        fill: cn.flow === selected ? "#0969da" : cn.upgraded ? "#2da44e" : "#cf222e",
        opacity: cn.flow === selected ? 1 : 0.7, "data-flow": cn.flow, class: "gantt" });
      bar.append(svg("title", {}, "#" + cn.flow + " " + cn.client + " \u2192 " + cn.server + " " + (cn.uri || "")));
      bar.addEventListener("click", () => select(cn.flow, false));
      s.append(bar);
      if (cn.anomalies.length) {
        s.append(svg("rect", { x: x(cn.t0 + cn.anomalies[0][0]) - 1, y: y, width: 2, height: laneH, fill: "#cf222e" }));
      }
    });
    if (c) drawConnection(s, c, ganttH, width, left, right);
    box.replaceChildren(s);
  }
  function drawConnection(s, c, top, width, left, right) {
    const plotW = width - left - right;
    let span = Math.max(0.001, c.end === null ? 0 : c.end - c.t0);
    span = maxOf(maxOf(maxOf(span, c.items, (it) => it[0]), c.rtts, (r) => r[0]), c.anomalies, (a) => a[0]);
    // Bins of 1, 2 or 5 times a power of ten seconds, about 100 across; rates per second.
    const raw = span / 100, p10 = Math.pow(10, Math.floor(Math.log10(raw)));
    const binW = [1, 2, 5, 10].map((m) => m * p10).find((w) => w >= raw) || 10 * p10;
    const bins = Math.max(1, Math.floor(span / binW) + 1);
    const msgs = [new Float64Array(bins), new Float64Array(bins)];
    const byts = [new Float64Array(bins), new Float64Array(bins)];
    for (const it of c.items) {
      const b = Math.min(bins - 1, Math.max(0, Math.floor(it[0] / binW)));
      msgs[it[1]][b] += 1 / binW;
      byts[it[1]][b] += it[4] / binW;
    }
    const x = (t) => left + (t / (binW * bins)) * plotW;
    const panels = [["messages/s", msgs, 0], ["bytes/s", byts, 70], ["ping RTT", null, 140]];
    s.append(svg("line", { x1: 0, x2: width, y1: top - 4, y2: top - 4, stroke: "#d0d7de" }));
    for (const [label, series, off] of panels) {
      const y0 = top + off + 4, h = 56;
      s.append(svg("text", { x: 4, y: y0 + 10 }, label));
      s.append(svg("line", { x1: left, x2: width - right, y1: y0 + h, y2: y0 + h, stroke: "#d0d7de" }));
      if (series) {
        const max = Math.max(1e-9, ...series[0], ...series[1]);
        s.append(svg("text", { x: left - 4, y: y0 + 10, "text-anchor": "end" }, (label === "bytes/s" ? bytes(Math.round(max)) : max.toFixed(max < 10 ? 1 : 0)) + "/s"));
        const bw = Math.max(1, plotW / bins / 2 - 0.5);
        for (let d = 0; d < 2; d++) {
          for (let b = 0; b < bins; b++) {
            if (!series[d][b]) continue;
            const hh = Math.max(1, (series[d][b] / max) * h);
            s.append(svg("rect", { x: x(b * binW) + d * bw, y: y0 + h - hh, width: bw, height: hh,
              fill: d === 0 ? "#1a7f37" : "#0969da", class: "bin" }));
          }
        }
      } else if (c.rtts.length) {
        const max = maxOf(1e-9, c.rtts, (r) => r[1]);
        s.append(svg("text", { x: left - 4, y: y0 + 10, "text-anchor": "end" }, secs(max)));
        let path = "";
        c.rtts.forEach((r, i) => {
          const px = x(r[0]), py = y0 + h - (r[1] / max) * h;
          path += (i ? "L" : "M") + px.toFixed(1) + " " + py.toFixed(1);
          s.append(svg("circle", { cx: px, cy: py, r: 2, fill: "#8250df", class: "rtt" }));
        });
        s.append(svg("path", { d: path, stroke: "#8250df", fill: "none" }));
      } else {
        s.append(svg("text", { x: left + 4, y: y0 + h / 2 }, "no ping answered"));
      }
    }
    const markers = [];
    if (c.close) markers.push([c.close.t, "#8250df", "close " + (c.close.code === null ? "" : c.close.code)]);
    for (const a of c.anomalies) markers.push([a[0], "#cf222e", a[2]]);
    for (const [t, color, label] of markers) {
      const mx = x(t);
      const line = svg("line", { x1: mx, x2: mx, y1: top, y2: top + 200, stroke: color, "stroke-dasharray": "3 2", class: "marker" });
      line.append(svg("title", {}, label + " at +" + t.toFixed(3) + " s"));
      s.append(line);
    }
    s.append(svg("text", { x: left, y: top + 208 }, "+0 s (upgrade " + clock(c.t0) + ")"));
    s.append(svg("text", { x: width - right, y: top + 208, "text-anchor": "end" },
      "+" + secs(binW * bins) + ", bins of " + secs(binW) + "; \u2191 sent green, \u2193 received blue"));
  }

  // --- selection -----------------------------------------------------------------------
  function select(flow, scroll) {
    if (!byFlow.has(flow)) return;
    if (selected !== null && rows.has(selected)) rows.get(selected).classList.remove("selected");
    selected = flow;
    chosen = -1;
    $("detail").hidden = true;
    const tr = rows.get(flow);
    tr.classList.add("selected");
    if (scroll) tr.scrollIntoView({ block: "nearest" });
    const c = byFlow.get(flow);
    $("messages-title").textContent = "#" + c.flow + " " + c.client + " \u2192 " + c.server + " " + (c.url || "");
    $("timeline-title").textContent = "#" + c.flow;
    applyFilter();
    drawTimeline();
  }
  renderConnections();
  // A link to a connection (report.html#flow-N) opens with it chosen.
  const linked = /^#flow-(\d+)$/.exec(location.hash);
  const first = (linked && byFlow.get(Number(linked[1]))) || conns.find((c) => c.items.length) || conns[0];
  if (first) select(first.flow, !!linked); else { applyFilter(); drawTimeline(); }
  window.addEventListener("resize", () => drawTimeline());
})();
