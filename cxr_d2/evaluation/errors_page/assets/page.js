// The error-analysis page: redoes the evaluator's FROC matching (matching.py states the rule)
// from the embedded candidate pairs whenever the score threshold or the class filter changes.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const dets = data.dets; // {i: image index, c: class index, s: score, b: XYWH, m: [[gt, iou]]}
  const gts = data.gts; // {i: image index, c: class index, b: XYWH, crowd: 0 or 1}

  // Detections of each (image, class), highest score first; sort() is stable, so equal
  // scores keep the order of the results file, as in Python.
  const groups = new Map();
  dets.forEach(function (d, k) {
    const key = d.i + "|" + d.c;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(k);
  });
  groups.forEach(function (idx) {
    idx.sort(function (a, b) { return dets[b].s - dets[a].s; });
  });

  // Label every detection with score >= threshold: 1 TP, 0 FP, -1 ignored (crowd), null
  // below the threshold; taken[g] is the detection that found lesion g, or -1.
  function match(threshold) {
    const labels = new Array(dets.length).fill(null);
    const taken = new Array(gts.length).fill(-1);
    groups.forEach(function (idx) {
      for (const k of idx) {
        const d = dets[k];
        if (d.s < threshold) break;
        let best = -1, bestIou = -1, crowdHit = false;
        for (const pair of d.m) {
          const g = pair[0], iou = pair[1];
          if (gts[g].crowd) { crowdHit = true; continue; }
          if (taken[g] < 0 && iou > bestIou) { best = g; bestIou = iou; }
        }
        if (best >= 0) { taken[best] = k; labels[k] = 1; }
        else labels[k] = crowdHit ? -1 : 0;
      }
    });
    return { labels: labels, taken: taken };
  }

  function wanted(c, cls) { return cls === null || c === cls; }

  // Per image and total counts of a matching, for one class or all (cls null).
  function count(m, cls) {
    const per = data.images.map(function () { return { tp: 0, fp: 0, fn: 0, lesions: 0 }; });
    dets.forEach(function (d, k) {
      if (!wanted(d.c, cls)) return;
      if (m.labels[k] === 1) per[d.i].tp += 1;
      else if (m.labels[k] === 0) per[d.i].fp += 1;
    });
    gts.forEach(function (g) {
      if (!g.crowd && wanted(g.c, cls)) per[g.i].lesions += 1;
    });
    const total = { tp: 0, fp: 0, fn: 0, lesions: 0 };
    per.forEach(function (p) {
      p.fn = p.lesions - p.tp;
      for (const key in total) total[key] += p[key];
    });
    return { per: per, total: total };
  }

  // Operating points of every threshold between distinct scores (as froc.froc_curve),
  // from the matching of all detections: a label never depends on a lower score.
  function curves(cls) {
    const m = match(-Infinity);
    const kept = [];
    dets.forEach(function (d, k) {
      if (wanted(d.c, cls) && m.labels[k] >= 0) kept.push([d.s, m.labels[k]]);
    });
    kept.sort(function (a, b) { return b[0] - a[0]; });
    const lesions = count(m, cls).total.lesions;
    const n = Math.max(data.images.length, 1);
    const froc = { x: [0], y: [0] }, pr = { x: [], y: [] };
    let tp = 0, fp = 0;
    kept.forEach(function (e, j) {
      if (e[1] === 1) tp += 1; else fp += 1;
      if (j + 1 < kept.length && kept[j + 1][0] === e[0]) return;
      froc.x.push(fp / n);
      froc.y.push(lesions ? tp / lesions : NaN);
      pr.x.push(lesions ? tp / lesions : NaN);
      pr.y.push(tp / (tp + fp));
    });
    // The step curve's vertices: the first point of each sensitivity, and the last point.
    const vx = [], vy = [];
    froc.y.forEach(function (y, j) {
      if (j === 0 || y !== froc.y[j - 1] || j === froc.y.length - 1) {
        vx.push(froc.x[j]);
        vy.push(y);
      }
    });
    return { froc: { x: vx, y: vy }, pr: pr, lesions: lesions };
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG_NS, name);
    for (const a in attrs) node.setAttribute(a, attrs[a]);
    if (parent) parent.appendChild(node);
    return node;
  }

  // ---- the gallery ----------------------------------------------------------------------

  const gallery = document.getElementById("gallery");
  document.documentElement.style.setProperty("--thumb", data.thumb_size + "px");
  const cards = data.images.map(function (im, k) {
    const fig = document.createElement("figure");
    fig.className = "card";
    fig.dataset.imageId = String(im.id);
    fig.dataset.index = String(k);
    const svg = el("svg", { viewBox: "0 0 " + im.w + " " + im.h, role: "img" }, fig);
    if (im.thumb) el("image", { href: im.thumb, x: 0, y: 0, width: im.w, height: im.h }, svg);
    const boxes = el("g", {}, svg);
    const cap = document.createElement("figcaption");
    cap.innerHTML = '<span class="n tp-n"></span><span class="n fp-n"></span>' +
      '<span class="n fn-n"></span><br><span class="name"></span>' +
      (im.note ? '<br><span class="note"></span>' : "");
    cap.querySelector(".name").textContent = im.name;
    if (im.note) cap.querySelector(".note").textContent = im.note;
    fig.appendChild(cap);
    gallery.appendChild(fig);
    return { fig: fig, boxes: boxes, tp: cap.querySelector(".tp-n"),
      fp: cap.querySelector(".fp-n"), fn: cap.querySelector(".fn-n"), shown: "" };
  });

  // A rectangle per detection and per lesion, made when first shown; an update sets classes.
  function box(parent, b, title) {
    const r = el("rect", { x: b[0], y: b[1], width: b[2], height: b[3] }, parent);
    el("title", {}, r).textContent = title;
    return r;
  }
  const gtRects = new Array(gts.length).fill(null), gtKinds = new Array(gts.length).fill("off");
  const detRects = new Array(dets.length).fill(null);
  const detKinds = new Array(dets.length).fill("off");

  function show(rects, kinds, k, kind, make) {
    if (kinds[k] === kind) return;
    kinds[k] = kind;
    if (rects[k] === null) rects[k] = make();
    rects[k].setAttribute("class", "box " + kind);
  }

  function drawBoxes(m, cls) {
    gts.forEach(function (g, j) {
      const missed = !g.crowd && wanted(g.c, cls) && m.taken[j] < 0;
      show(gtRects, gtKinds, j, missed ? "fn" : "off", function () {
        return box(cards[g.i].boxes, g.b, "lesion: " + data.classes[g.c]);
      });
    });
    dets.forEach(function (d, k) {
      const label = m.labels[k];
      let kind = "off";
      if (label !== null && wanted(d.c, cls)) kind = ["ignored", "fp", "tp"][label + 1];
      show(detRects, detKinds, k, kind, function () {
        return box(cards[d.i].boxes, d.b, data.classes[d.c] + " " + d.s.toFixed(3));
      });
    });
  }

  function sortCards(per, key) {
    const order = data.images.map(function (_, k) { return k; });
    const score = {
      errors: function (k) { return per[k].fp + per[k].fn; },
      fp: function (k) { return per[k].fp; },
      fn: function (k) { return per[k].fn; },
      name: function () { return 0; },
    }[key];
    order.sort(function (a, b) { return score(b) - score(a) || a - b; });
    if (order.join() === shownOrder) return;
    shownOrder = order.join();
    gallery.replaceChildren.apply(gallery, order.map(function (k) { return cards[k].fig; }));
  }
  let shownOrder = "";

  // ---- the curves -----------------------------------------------------------------------

  function plot(svg, curve, here, opts) {
    svg.replaceChildren();
    const L = 38, R = 290, T = 10, B = 185;
    const sx = function (x) {
      const v = opts.log ? Math.log2(Math.max(x, opts.x0)) : x;
      const v0 = opts.log ? Math.log2(opts.x0) : opts.x0;
      const v1 = opts.log ? Math.log2(opts.x1) : opts.x1;
      return L + (R - L) * (v - v0) / (v1 - v0);
    };
    const sy = function (y) { return B - (B - T) * y; };
    opts.xticks.forEach(function (t) {
      el("line", { x1: sx(t), x2: sx(t), y1: T, y2: B, class: "grid" }, svg);
      el("text", { x: sx(t), y: B + 12, "text-anchor": "middle" }, svg).textContent = String(t);
    });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (t) {
      el("line", { x1: L, x2: R, y1: sy(t), y2: sy(t), class: "grid" }, svg);
      el("text", { x: L - 4, y: sy(t) + 3, "text-anchor": "end" }, svg).textContent = String(t);
    });
    el("rect", { x: L, y: T, width: R - L, height: B - T, class: "axis" }, svg);
    el("text", { x: (L + R) / 2, y: 212, "text-anchor": "middle" }, svg).textContent = opts.xlabel;
    const ylab = el("text", { x: 10, y: (T + B) / 2, "text-anchor": "middle",
      transform: "rotate(-90 10 " + (T + B) / 2 + ")" }, svg);
    ylab.textContent = opts.ylabel;
    const pts = [];
    curve.x.forEach(function (x, j) {
      if (isNaN(curve.y[j])) return;
      if (pts.length) pts.push(sx(x) + "," + pts[pts.length - 1].split(",")[1]);
      pts.push(sx(x) + "," + sy(curve.y[j]));
    });
    if (opts.extend && pts.length) pts.push(R + "," + pts[pts.length - 1].split(",")[1]);
    el("polyline", { points: pts.join(" "), class: "curve", "data-x": JSON.stringify(curve.x),
      "data-y": JSON.stringify(curve.y) }, svg);
    if (here && !isNaN(here[0]) && !isNaN(here[1])) {
      el("circle", { cx: sx(Math.min(here[0], opts.x1)), cy: sy(here[1]), r: 4, class: "here",
        "data-x": here[0], "data-y": here[1] }, svg);
    }
  }

  // ---- state --------------------------------------------------------------------------------

  const slider = document.getElementById("threshold");
  const classFilter = document.getElementById("class-filter");
  const sortBy = document.getElementById("sort");
  data.classes.forEach(function (name, k) {
    const o = document.createElement("option");
    o.value = String(k);
    o.textContent = name;
    classFilter.appendChild(o);
  });
  slider.value = String(data.threshold);
  let curveCache = new Map();

  function fmt(x) { return isFinite(x) ? x.toFixed(3) : "n/a"; }

  function update() {
    const threshold = parseFloat(slider.value);
    const cls = classFilter.value === "" ? null : parseInt(classFilter.value, 10);
    document.getElementById("threshold-value").textContent = String(+threshold.toFixed(3));
    const m = match(threshold);
    const c = count(m, cls);
    c.per.forEach(function (p, k) {
      const card = cards[k], text = [p.tp, p.fp, p.fn].join();
      if (card.shown === text) return;
      card.shown = text;
      card.tp.textContent = "TP " + p.tp;
      card.fp.textContent = "FP " + p.fp;
      card.fn.textContent = "FN " + p.fn;
    });
    const t = c.total;
    document.getElementById("total-tp").textContent = t.tp;
    document.getElementById("total-fp").textContent = t.fp;
    document.getElementById("total-fn").textContent = t.fn;
    document.getElementById("total-lesions").textContent = t.lesions;
    const sens = t.lesions ? t.tp / t.lesions : NaN;
    const fppi = t.fp / Math.max(data.images.length, 1);
    const prec = t.tp + t.fp ? t.tp / (t.tp + t.fp) : NaN;
    document.getElementById("sensitivity").textContent = fmt(sens);
    document.getElementById("fppi").textContent = fmt(fppi);
    document.getElementById("precision").textContent = fmt(prec);
    drawBoxes(m, cls);
    sortCards(c.per, sortBy.value);
    const key = String(cls);
    if (!curveCache.has(key)) curveCache.set(key, curves(cls));
    const cv = curveCache.get(key);
    const fmax = Math.max(8, cv.froc.x[cv.froc.x.length - 1] || 0);
    plot(document.getElementById("froc"), cv.froc, [fppi, sens], { log: true, x0: 1 / 16,
      x1: fmax, xticks: [0.125, 0.5, 2, 8], xlabel: "false positives per image",
      ylabel: "sensitivity", extend: true });
    plot(document.getElementById("pr"), cv.pr, [sens, prec], { log: false, x0: 0, x1: 1,
      xticks: [0, 0.25, 0.5, 0.75, 1], xlabel: "recall", ylabel: "precision", extend: false });
    document.body.dataset.ready = "1";
  }

  function selfCheck() {
    // The page's matching at the tool's threshold against the counts Python wrote.
    const t = count(match(data.threshold), null).total, p = data.python_totals;
    const same = t.tp === p.tp && t.fp === p.fp && t.fn === p.fn;
    const note = document.getElementById("check");
    note.textContent = same
      ? "Counts at score \u2265 " + data.threshold + " equal those computed in Python."
      : "The page's matching disagrees with Python's at score \u2265 " + data.threshold +
        " (page TP/FP/FN " + [t.tp, t.fp, t.fn].join("/") + ", Python " +
        [p.tp, p.fp, p.fn].join("/") + ").";
    note.className = same ? "" : "bad";
  }

  document.getElementById("about").textContent = data.about;
  slider.addEventListener("input", update);
  classFilter.addEventListener("change", update);
  sortBy.addEventListener("change", update);
  selfCheck();
  update();
})();
