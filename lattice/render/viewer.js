// lattice viewer.html: three linked slice views, a 3-D view, a vertex list. Plain
// JavaScript, no library, no network. The data (lattice/render/viewer_data.py) are on the
// "viewer grid": canonical (closest RAS) voxel order, C order, voxel-to-RAS affine in meta.
// Display convention (as the static pictures): a view of the axes (h, v) shows h growing
// towards the image left and v towards the top; the voxel centre (ch, cv) is at canvas
// pixel (ox + (W - 0.5 - ch) * sx, oy + (H - 0.5 - cv) * sy).
"use strict";
(function () {
  const errors = [];
  const report = (text) => {
    errors.push(String(text));
    document.body.dataset.errors = JSON.stringify(errors);
  };
  window.addEventListener("error", (e) => report(e.message));
  window.addEventListener("unhandledrejection", (e) => report(e.reason));
  document.addEventListener("securitypolicyviolation", (e) => report("CSP " + e.blockedURI));

  const meta = JSON.parse(document.getElementById("lattice-meta").textContent);
  const G = meta.grid;
  const [N0, N1, N2] = G.shape;
  const VOX = G.voxel_size_mm;
  const S = {
    point: G.gtv_centroid_ijk.slice(),
    window: meta.windows.soft.slice(),
    visible: { ct: true },
    crosshair: true,
    labels: true,
    selected: null,
    yaw: 0,
    pitch: 0,
    zoom: 1,
  };
  meta.structures.forEach((s) => (S.visible[s.key] = true));
  let CT = null;
  const MASKS = {};
  const MESHES = {};

  // -- decoding ---------------------------------------------------------------------------
  async function inflate(name) {
    const el = document.querySelector(`script[data-blob="${name}"]`);
    const bin = atob(el.textContent);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).arrayBuffer();
  }
  const maskAt = (bits, i, j, k) => {
    const idx = (i * N1 + j) * N2 + k;
    return (bits[idx >> 3] >> (idx & 7)) & 1;
  };

  // -- geometry ---------------------------------------------------------------------------
  const apply = (A, p) => [0, 1, 2].map((r) => A[r][0] * p[0] + A[r][1] * p[1] + A[r][2] * p[2] + A[r][3]);
  const toIjk = (ras) => apply(G.inverse, ras);
  const toRas = (ijk) => apply(G.affine, ijk);
  const clampLayer = (x, n) => Math.max(0, Math.min(n - 1, Math.round(x)));
  const spheres = () => {
    const out = [];
    meta.vertices.forEach((v) =>
      out.push({ key: "vertices", id: v.id, ras: v.center_ras_mm, r: meta.diameter_mm / 2 }));
    (meta.cold_spheres || []).forEach((c) =>
      out.push({ key: "cold", id: c.id, ras: c.center_ras_mm, r: c.diameter_mm / 2 }));
    out.forEach((s) => (s.ijk = toIjk(s.ras)));
    return out;
  };
  const SPHERES = spheres();
  const colorOf = (key) => meta.structures.find((s) => s.key === key).color;
  // A colour "#rrggbb" scaled by f (shading), with alpha a.
  const shade = (hex, f, a) => {
    const n = parseInt(hex.slice(1), 16);
    const c = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map((x) => Math.round(x * f));
    return `rgba(${c[0]},${c[1]},${c[2]},${a})`;
  };
  const rgba = (hex, a) => shade(hex, 1, a);

  // -- slice views ------------------------------------------------------------------------
  const VIEWS = meta.views.map((v) => {
    const n = G.shape;
    return Object.assign({}, v, { W: n[v.h], H: n[v.v], L: n[v.normal] });
  });
  function layout(view) {
    const c = view.canvas;
    const s = Math.min(c.width / (view.W * VOX[view.h]), c.height / (view.H * VOX[view.v]));
    const sx = s * VOX[view.h];
    const sy = s * VOX[view.v];
    return { s, sx, sy, ox: (c.width - view.W * sx) / 2, oy: (c.height - view.H * sy) / 2 };
  }
  function sliceValue(view, x, y, layer, get) {
    const c = [0, 0, 0];
    c[view.h] = view.W - 1 - x;
    c[view.v] = view.H - 1 - y;
    c[view.normal] = layer;
    return get(c[0], c[1], c[2]);
  }
  function drawCt(view, ctx, lay, layer) {
    const { W, H } = view;
    const img = new ImageData(W, H);
    const [level, width] = S.window;
    const lo = level - width / 2;
    const get = (i, j, k) => CT[(i * N1 + j) * N2 + k];
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const hu = S.visible.ct ? sliceValue(view, x, y, layer, get) : -1e9;
        const g = Math.max(0, Math.min(255, ((hu - lo) / width) * 255));
        const o = 4 * (y * W + x);
        img.data[o] = img.data[o + 1] = img.data[o + 2] = g;
        img.data[o + 3] = 255;
      }
    }
    const off = view.off || (view.off = document.createElement("canvas"));
    off.width = W;
    off.height = H;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, lay.ox, lay.oy, W * lay.sx, H * lay.sy);
  }
  // Marching squares at 0.5 on a binary slice (edge midpoints): the outline half way
  // between inside and outside voxel centres, as the exported contours.
  const CASES = [[], [[3, 0]], [[0, 1]], [[3, 1]], [[1, 2]], [[3, 0], [1, 2]], [[0, 2]], [[3, 2]],
    [[2, 3]], [[0, 2]], [[0, 1], [2, 3]], [[1, 2]], [[3, 1]], [[0, 1]], [[3, 0]], []];
  const EDGE = [[0.5, 0], [1, 0.5], [0.5, 1], [0, 0.5]]; // top, right, bottom, left of a cell
  function outline(view, bits, layer) {
    const { W, H } = view;
    const m = new Uint8Array((W + 2) * (H + 2));
    let any = false;
    const get = (i, j, k) => maskAt(bits, i, j, k);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        if (sliceValue(view, x, y, layer, get)) { m[(y + 1) * (W + 2) + x + 1] = 1; any = true; }
    const segs = [];
    if (!any) return segs;
    for (let y = 0; y < H + 1; y++) {
      for (let x = 0; x < W + 1; x++) {
        const a = m[y * (W + 2) + x], b = m[y * (W + 2) + x + 1];
        const c = m[(y + 1) * (W + 2) + x + 1], d = m[(y + 1) * (W + 2) + x];
        for (const [e0, e1] of CASES[a | (b << 1) | (c << 2) | (d << 3)])
          // padded pixel centre (x, y) is display pixel (x - 1, y - 1)
          segs.push([x - 1 + EDGE[e0][0], y - 1 + EDGE[e0][1], x - 1 + EDGE[e1][0], y - 1 + EDGE[e1][1]]);
      }
    }
    return segs;
  }
  // Segments joined into polylines, so that a dash pattern runs along an outline.
  function chain(segs) {
    const key = (x, y) => x + "," + y;
    const ends = new Map();
    segs.forEach((s, i) => {
      for (const k of [key(s[0], s[1]), key(s[2], s[3])]) {
        if (!ends.has(k)) ends.set(k, []);
        ends.get(k).push(i);
      }
    });
    const used = new Uint8Array(segs.length);
    const lines = [];
    for (let i = 0; i < segs.length; i++) {
      if (used[i]) continue;
      used[i] = 1;
      const line = [[segs[i][0], segs[i][1]], [segs[i][2], segs[i][3]]];
      for (let grow = true; grow; ) {
        grow = false;
        const [x, y] = line[line.length - 1];
        for (const j of ends.get(key(x, y))) {
          if (used[j]) continue;
          used[j] = 1;
          const t = segs[j];
          line.push(t[0] === x && t[1] === y ? [t[2], t[3]] : [t[0], t[1]]);
          grow = true;
          break;
        }
      }
      lines.push(line);
    }
    return lines;
  }
  const DASH = { solid: [], dashed: [6, 4], dotted: [2, 3] };
  function drawView(view) {
    const ctx = view.canvas.getContext("2d");
    const lay = layout(view);
    view.lay = lay;
    const layer = clampLayer(S.point[view.normal], view.L);
    view.layer = layer;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, view.canvas.width, view.canvas.height);
    drawCt(view, ctx, lay, layer);
    const X = (ch) => lay.ox + (view.W - 0.5 - ch) * lay.sx;
    const Y = (cv) => lay.oy + (view.H - 0.5 - cv) * lay.sy;
    ctx.save();
    ctx.beginPath();
    ctx.rect(lay.ox, lay.oy, view.W * lay.sx, view.H * lay.sy);
    ctx.clip();
    for (const s of meta.structures) {
      if (s.kind !== "mask" || !S.visible[s.key] || !MASKS[s.key]) continue;
      const segs = outline(view, MASKS[s.key], layer);
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.key === "gtv" ? 1.6 : 1.4;
      ctx.setLineDash(DASH[s.style] || []);
      ctx.beginPath();
      for (const line of chain(segs)) {
        line.forEach(([x, y], n) => {
          const px = lay.ox + (x + 0.5) * lay.sx, py = lay.oy + (y + 0.5) * lay.sy;
          if (n === 0) ctx.moveTo(px, py);
          else ctx.lineTo(px, py);
        });
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    // Spheres: the true cross-section with the plane of this layer's voxel centres.
    for (const sp of SPHERES) {
      if (!S.visible[sp.key]) continue;
      const d = Math.abs(sp.ijk[view.normal] - layer) * VOX[view.normal];
      if (d >= sp.r) continue;
      const r = Math.sqrt(sp.r * sp.r - d * d) * lay.s;
      const cx = X(sp.ijk[view.h]), cy = Y(sp.ijk[view.v]);
      const color = colorOf(sp.key);
      const sel = sp.key === "vertices" && S.selected === sp.id;
      ctx.beginPath();
      ctx.arc(cx, cy, r, 0, 2 * Math.PI);
      ctx.fillStyle = rgba(color, sel ? 0.7 : 0.4);
      ctx.fill();
      ctx.strokeStyle = sel ? "#ffffff" : color;
      ctx.lineWidth = sel ? 2 : 1;
      ctx.stroke();
      if (S.labels && sp.key === "vertices" && r > 6) {
        ctx.font = "bold 11px sans-serif";
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.lineWidth = 3;
        ctx.strokeStyle = "#000";
        ctx.strokeText(String(sp.id), cx, cy);
        ctx.fillStyle = "#fff";
        ctx.fillText(String(sp.id), cx, cy);
      }
    }
    if (S.crosshair) {
      const px = X(S.point[view.h]), py = Y(S.point[view.v]);
      ctx.strokeStyle = "rgba(120,255,120,0.55)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(lay.ox, py); ctx.lineTo(px - 8, py);
      ctx.moveTo(px + 8, py); ctx.lineTo(lay.ox + view.W * lay.sx, py);
      ctx.moveTo(px, lay.oy); ctx.lineTo(px, py - 8);
      ctx.moveTo(px, py + 8); ctx.lineTo(px, lay.oy + view.H * lay.sy);
      ctx.stroke();
    }
    ctx.restore();
    drawLetters(ctx, view, lay);
    view.info.textContent = `layer ${layer + 1}/${view.L}`;
    view.slider.max = view.L - 1;
    view.slider.value = layer;
  }
  function drawLetters(ctx, view, lay) {
    const L = view.letters, w = view.W * lay.sx, h = view.H * lay.sy;
    ctx.font = "bold 15px sans-serif";
    ctx.fillStyle = meta.letter_color;
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 3;
    const put = (t, x, y, align, base) => {
      ctx.textAlign = align; ctx.textBaseline = base;
      ctx.strokeText(t, x, y); ctx.fillText(t, x, y);
    };
    put(L.left, lay.ox + 4, lay.oy + h / 2, "left", "middle");
    put(L.right, lay.ox + w - 4, lay.oy + h / 2, "right", "middle");
    put(L.top, lay.ox + w / 2, lay.oy + 3, "center", "top");
    put(L.bottom, lay.ox + w / 2, lay.oy + h - 3, "center", "bottom");
  }
  function pointFromMouse(view, ev) {
    const rect = view.canvas.getBoundingClientRect();
    const lay = view.lay;
    const x = ((ev.clientX - rect.left) * view.canvas.width) / rect.width;
    const y = ((ev.clientY - rect.top) * view.canvas.height) / rect.height;
    const p = S.point.slice();
    p[view.h] = Math.max(0, Math.min(view.W - 1, view.W - 0.5 - (x - lay.ox) / lay.sx));
    p[view.v] = Math.max(0, Math.min(view.H - 1, view.H - 0.5 - (y - lay.oy) / lay.sy));
    p[view.normal] = view.layer;
    S.point = p;
    redraw2d();
  }

  // -- 3-D view: orthographic, painter's algorithm (far to near) on a 2-D canvas ----------
  let scene = null;
  function buildScene() {
    const tris = [];
    for (const s of meta.structures) {
      const sizes = meta.meshes[s.key];
      if (!sizes || !MESHES[s.key]) continue;
      const buf = MESHES[s.key];
      const P = new Float32Array(buf, 0, sizes[0] * 3);
      const F = new Uint32Array(buf, sizes[0] * 12, sizes[1] * 3);
      tris.push({ key: s.key, P, F, alpha: s.key === "gtv" ? 0.22 : 0.3, color: s.color });
    }
    let lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    const grow = (p, r) => { for (let a = 0; a < 3; a++) { lo[a] = Math.min(lo[a], p[a] - r); hi[a] = Math.max(hi[a], p[a] + r); } };
    for (const t of tris) for (let i = 0; i < t.P.length; i += 3) grow([t.P[i], t.P[i + 1], t.P[i + 2]], 0);
    SPHERES.forEach((s) => grow(s.ras, s.r));
    const centre = [0, 1, 2].map((a) => (lo[a] + hi[a]) / 2);
    const radius = Math.max(1, 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]));
    scene = { tris, centre, radius };
  }
  function camera() {
    // yaw about world z, then pitch about the screen's horizontal; (0, 0): from anterior,
    // the patient's right on the image left, superior up (as overview3d.png).
    const y = (S.yaw * Math.PI) / 180, p = (S.pitch * Math.PI) / 180;
    const right0 = [-Math.cos(y), -Math.sin(y), 0];
    const toward0 = [-Math.sin(y), Math.cos(y), 0];
    const up = [toward0[0] * -Math.sin(p), toward0[1] * -Math.sin(p), Math.cos(p)];
    const toward = [toward0[0] * Math.cos(p), toward0[1] * Math.cos(p), Math.sin(p)];
    return { right: right0, up, toward };
  }
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  function draw3d() {
    const c = view3d.canvas, ctx = c.getContext("2d");
    ctx.fillStyle = "#24272c";
    ctx.fillRect(0, 0, c.width, c.height);
    if (!scene) return;
    const cam = camera();
    const k = (Math.min(c.width, c.height) / (2.1 * scene.radius)) * S.zoom;
    const q = (p) => {
      const d = [p[0] - scene.centre[0], p[1] - scene.centre[1], p[2] - scene.centre[2]];
      return [c.width / 2 + dot(d, cam.right) * k, c.height / 2 - dot(d, cam.up) * k, dot(d, cam.toward)];
    };
    const items = [];
    for (const t of scene.tris) {
      if (!S.visible[t.key]) continue;
      const P = t.P, F = t.F;
      for (let f = 0; f < F.length; f += 3) {
        const a = [P[3 * F[f]], P[3 * F[f] + 1], P[3 * F[f] + 2]];
        const b = [P[3 * F[f + 1]], P[3 * F[f + 1] + 1], P[3 * F[f + 1] + 2]];
        const e = [P[3 * F[f + 2]], P[3 * F[f + 2] + 1], P[3 * F[f + 2] + 2]];
        const u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]], v = [e[0] - a[0], e[1] - a[1], e[2] - a[2]];
        const n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
        const lit = Math.abs(dot(n, cam.toward)) / (Math.hypot(n[0], n[1], n[2]) || 1);
        const A = q(a), B = q(b), E = q(e);
        items.push({ z: (A[2] + B[2] + E[2]) / 3, tri: [A, B, E], t, lit });
      }
    }
    for (const s of SPHERES) if (S.visible[s.key]) { const Q = q(s.ras); items.push({ z: Q[2], s, Q }); }
    items.sort((m, n) => m.z - n.z);
    const styles = {};
    for (const it of items) {
      if (it.tri) {
        const level = Math.round(it.lit * 8);
        const key = it.t.key + level;
        if (!styles[key]) styles[key] = shade(it.t.color, 0.7 + 0.05 * level, it.t.alpha);
        ctx.fillStyle = styles[key];
        const [A, B, E] = it.tri;
        ctx.beginPath(); ctx.moveTo(A[0], A[1]); ctx.lineTo(B[0], B[1]); ctx.lineTo(E[0], E[1]); ctx.fill();
      } else {
        const r = it.s.r * k, [x, y] = it.Q, color = colorOf(it.s.key);
        const g = ctx.createRadialGradient(x - r / 3, y - r / 3, r / 8, x, y, r);
        g.addColorStop(0, "#ffffff");
        g.addColorStop(0.35, color);
        g.addColorStop(1, shade(color, 0.45, 1));
        ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fillStyle = g; ctx.fill();
        if (it.s.key === "vertices" && S.selected === it.s.id) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.stroke(); }
      }
    }
    drawTriad(ctx, cam, c);
  }
  function drawTriad(ctx, cam, c) {
    const o = [44, c.height - 44];
    const axes = [[[1, 0, 0], "R", "L"], [[0, 1, 0], "A", "P"], [[0, 0, 1], "S", "I"]];
    ctx.font = "bold 13px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (const [d, pos] of axes) {
      const x = o[0] + 28 * dot(d, cam.right), y = o[1] - 28 * dot(d, cam.up);
      ctx.strokeStyle = meta.letter_color; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(o[0], o[1]); ctx.lineTo(x, y); ctx.stroke();
      ctx.fillStyle = meta.letter_color;
      // an axis pointing at the camera (or away) has no room for its letter
      if (Math.hypot(dot(d, cam.right), dot(d, cam.up)) > 0.3)
        ctx.fillText(pos, o[0] + 38 * dot(d, cam.right), o[1] - 38 * dot(d, cam.up));
    }
  }

  // -- page -------------------------------------------------------------------------------
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => (k === "text" ? (e.textContent = v) : e.setAttribute(k, v)));
    kids.forEach((k) => e.append(k));
    return e;
  };
  const fmt = (x, d = 1) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));
  let view3d = null;
  function buildPage() {
    const nV = meta.vertices.length;
    const f = G.factor;
    const note = f.some((x) => x > 1)
      ? `CT downsampled by block means of ${f.join(" x ")} voxels to fit the page's size budget.`
      : "CT at its original resolution, cropped to the GTV and its surroundings.";
    document.body.append(el("header", {}, el("h1", { text: meta.title }),
      el("p", { text: `${nV} vertices, D ${meta.diameter_mm} mm. ${note} Radiological views; drag to move the crosshair, wheel or slider to scroll; drag the 3-D view to turn it, wheel to zoom. lattice ${meta.lattice_version || ""}` })));
    const views = el("div", { id: "views" });
    const app = el("div", { id: "app" }, views);
    document.body.append(app);
    for (const v of VIEWS) {
      v.canvas = el("canvas", { width: 480, height: 420 });
      v.info = el("span");
      v.slider = el("input", { type: "range", min: 0, max: v.L - 1, step: 1 });
      const sec = el("section", { class: "view", id: `view-${v.name}` },
        el("div", { class: "vhead" }, el("span", { text: v.name }), v.info), v.canvas, v.slider);
      views.append(sec);
      v.slider.addEventListener("input", () => { S.point[v.normal] = Number(v.slider.value); redraw2d(); });
      v.canvas.addEventListener("wheel", (ev) => {
        ev.preventDefault();
        S.point[v.normal] = clampLayer(v.layer + (ev.deltaY > 0 ? -1 : 1), v.L);
        redraw2d();
      });
      let down = false;
      v.canvas.addEventListener("mousedown", (ev) => { down = true; pointFromMouse(v, ev); });
      window.addEventListener("mouseup", () => (down = false));
      v.canvas.addEventListener("mousemove", (ev) => down && pointFromMouse(v, ev));
    }
    view3d = { canvas: el("canvas", { width: 480, height: 420 }) };
    const presets = el("span");
    [["anterior", 0, 0], ["left", 90, 0], ["right", -90, 0], ["superior", 0, 90], ["posterior", 180, 0]].forEach(([n, y, p]) => {
      const b = el("button", { text: n });
      b.addEventListener("click", () => { S.yaw = y; S.pitch = p; draw3d(); });
      presets.append(b);
    });
    views.append(el("section", { class: "view", id: "view-3d" },
      el("div", { class: "vhead" }, el("span", { text: "3-D (orthographic)" }), presets), view3d.canvas));
    bind3d();
    app.append(buildSide());
  }
  function bind3d() {
    const c = view3d.canvas;
    let last = null;
    c.addEventListener("mousedown", (ev) => (last = [ev.clientX, ev.clientY]));
    window.addEventListener("mouseup", () => (last = null));
    window.addEventListener("mousemove", (ev) => {
      if (!last) return;
      S.yaw += (ev.clientX - last[0]) * 0.5;
      S.pitch = Math.max(-90, Math.min(90, S.pitch + (ev.clientY - last[1]) * 0.5));
      last = [ev.clientX, ev.clientY];
      requestAnimationFrame(draw3d);
    });
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      S.zoom = Math.max(0.2, Math.min(20, S.zoom * (ev.deltaY > 0 ? 0.9 : 1.1)));
      requestAnimationFrame(draw3d);
    });
  }
  function buildSide() {
    const side = el("aside");
    side.append(el("h2", { text: "CT window (level / width, HU)" }));
    const wl = el("div", { id: "wl" });
    const lvl = el("input", { type: "number", value: S.window[0] });
    const wid = el("input", { type: "number", value: S.window[1], min: 1 });
    Object.entries(meta.windows).forEach(([n, w]) => {
      const b = el("button", { text: n });
      b.addEventListener("click", () => { S.window = w.slice(); lvl.value = w[0]; wid.value = w[1]; redraw2d(); });
      wl.append(b);
    });
    const setWl = () => { if (Number(wid.value) > 0) { S.window = [Number(lvl.value), Number(wid.value)]; redraw2d(); } };
    lvl.addEventListener("change", setWl); wid.addEventListener("change", setWl);
    wl.append(el("br"), "L ", lvl, " W ", wid);
    side.append(wl, el("h2", { text: "Structures" }));
    const list = el("div", { id: "structures" });
    [{ key: "ct", label: "CT", color: "#808080" }, ...meta.structures].forEach((s) => {
      const box = el("input", { type: "checkbox", "data-key": s.key });
      box.checked = S.visible[s.key];
      box.addEventListener("change", () => { S.visible[s.key] = box.checked; redraw(); });
      const sw = el("span", { class: "swatch" });
      sw.style.background = s.color;
      list.append(el("label", {}, box, sw, s.label));
    });
    side.append(list, el("h2", { text: "Crosshair" }), el("div", { id: "readout" }));
    side.append(el("h2", { text: "Vertices (click to go to one)" }), el("div", { id: "table-wrap" }, vertexTable()));
    side.append(el("p", { class: "note", text: "Depth: distance from the centre to the GTV surface; nearest: to the nearest other vertex centre; OAR: to each OAR (mm, from plan.json)." }));
    return side;
  }
  function vertexTable() {
    const oars = meta.structures.filter((s) => s.key.startsWith("oar")).map((s) => s.label);
    const head = el("tr", {}, ...["id", "name", "depth", "nearest", ...oars].map((t) => el("th", { text: t })));
    const body = el("tbody");
    meta.vertices.forEach((v) => {
      const tr = el("tr", { "data-id": v.id }, el("td", { text: v.id }), el("td", { text: v.name }),
        el("td", { text: fmt(v.depth_mm) }), el("td", { text: fmt(v.nearest_vertex_mm) }),
        ...oars.map((n) => el("td", { text: fmt(v.oar_distance_mm[n]) })));
      tr.addEventListener("click", () => selectVertex(v.id));
      body.append(tr);
    });
    return el("table", { id: "vertices" }, el("thead", {}, head), body);
  }
  function selectVertex(id) {
    const s = SPHERES.find((x) => x.key === "vertices" && x.id === id);
    if (!s) return report(`no vertex ${id}`);
    S.selected = id;
    S.point = s.ijk.slice();
    document.querySelectorAll("#vertices tr").forEach((tr) => tr.classList.toggle("selected", Number(tr.dataset.id) === id));
    redraw();
  }
  function readout() {
    const p = S.point;
    const ras = toRas(p);
    const r = [0, 1, 2].map((a) => clampLayer(p[a], G.shape[a]));
    const hu = CT ? CT[(r[0] * N1 + r[1]) * N2 + r[2]] : NaN;
    const t = (a) => a.map((x) => x.toFixed(1).padStart(8)).join("");
    document.getElementById("readout").textContent =
      `RAS mm ${t(ras)}\nLPS mm ${t([-ras[0], -ras[1], ras[2]])}\nHU     ${String(hu).padStart(8)}` +
      (S.selected ? `\nvertex ${S.selected}` : "");
  }
  function redraw2d() { VIEWS.forEach(drawView); readout(); }
  function redraw() { redraw2d(); draw3d(); }

  // -- URL fragment: scripted navigation ---------------------------------------------------
  function applyHash() {
    const args = new URLSearchParams(location.hash.slice(1));
    for (const [k, v] of args) {
      if (k.startsWith("overlay.")) S.visible[k.slice(8)] = v !== "0";
      else if (k === "crosshair") S.crosshair = v !== "0";
      else if (k === "labels") S.labels = v !== "0";
      else if (k === "window") S.window = meta.windows[v] ? meta.windows[v].slice() : v.split(",").map(Number);
      else if (k === "yaw" || k === "pitch" || k === "zoom") S[k] = Number(v);
      else if (k === "ras") S.point = toIjk(v.split(",").map(Number));
    }
    document.querySelectorAll("#structures input").forEach((b) => (b.checked = S.visible[b.dataset.key]));
    document.querySelectorAll("#wl input").forEach((b, i) => (b.value = S.window[i]));
    if (args.has("vertex")) selectVertex(Number(args.get("vertex")));
    else if (args.has("cold")) {
      const s = SPHERES.find((x) => x.key === "cold" && x.id === Number(args.get("cold")));
      if (s) S.point = s.ijk.slice();
      redraw();
    } else redraw();
  }

  window.latticeViewer = {
    state: () => JSON.parse(JSON.stringify({ point: S.point, window: S.window, visible: S.visible, selected: S.selected, layers: VIEWS.map((v) => v.layer), yaw: S.yaw, pitch: S.pitch, zoom: S.zoom })),
    viewLayout: (name) => {
      const v = name === "3d" ? view3d : VIEWS.find((x) => x.name === name);
      const r = v.canvas.getBoundingClientRect();
      return Object.assign({ left: r.left + window.scrollX, top: r.top + window.scrollY, W: v.W, H: v.H, layer: v.layer, h: v.h, v: v.v, normal: v.normal }, v.lay || {});
    },
  };

  async function main() {
    buildPage();
    CT = new Int16Array(await inflate("ct"));
    for (const s of meta.structures)
      if (s.kind === "mask") MASKS[s.key] = new Uint8Array(await inflate(`mask.${s.key}`));
    for (const key of Object.keys(meta.meshes)) MESHES[key] = await inflate(`mesh.${key}`);
    buildScene();
    applyHash();
    window.addEventListener("hashchange", applyHash);
    document.body.dataset.ready = "1";
  }
  main().catch(report);
})();
