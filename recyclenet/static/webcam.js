const pct = p => `${Math.round(100 * p)}%`;

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "rn-webcam";
  root.innerHTML = `
    <div class="rn-stage">
      <video class="rn-video" autoplay muted playsinline hidden></video>
      <img class="rn-still" alt="uploaded photo" hidden>
      <img class="rn-overlay" alt="" hidden>
      <div class="rn-nocam" hidden></div>
    </div>
    <div class="rn-panel">
      <div class="rn-label">…</div>
      <div class="rn-bars"></div>
      <div class="rn-stats"></div>
      <div class="rn-error" role="alert"></div>
      <div class="rn-row"><button class="rn-start"></button><select class="rn-camera" title="camera" hidden></select></div>
      <label class="rn-row">not sure below <input class="rn-threshold" type="range" min="0" max="1" step="0.05"><span class="rn-tvalue"></span></label>
      <label class="rn-row"><input class="rn-attention" type="checkbox"> show attention</label>
      <div class="rn-row"><select class="rn-class" title="the true class of the snapshot"></select><button class="rn-save">Save snapshot</button></div>
      <div class="rn-message"></div>
      <div class="rn-teach">
        <div class="rn-title">Teach it your own classes</div>
        <div class="rn-classes"></div>
        <div class="rn-row"><input class="rn-newclass" placeholder="new class" size="14"><button class="rn-add">Add class</button></div>
        <div class="rn-row"><button class="rn-train">Train</button><label class="rn-usebase"><input class="rn-base" type="checkbox"> from <span class="rn-basename"></span></label><label class="rn-keep" title="the new model knows the base's classes too"><input class="rn-keepbox" type="checkbox"> and its classes</label><button class="rn-adapt" title="fine-tune the base model on these photos of its own classes, from this camera (TrashNet rehearsed)">Adapt base</button><button class="rn-export">Export</button></div>
        <div class="rn-status" role="status"></div>
      </div>
    </div>`;
  el.appendChild(root);
  const $ = s => root.querySelector(s);
  const video = $(".rn-video"), still = $(".rn-still"), overlay = $(".rn-overlay"), nocam = $(".rn-nocam");
  const label = $(".rn-label"), bars = $(".rn-bars"), statsLine = $(".rn-stats"), error = $(".rn-error");
  const startBtn = $(".rn-start"), camSel = $(".rn-camera"), thr = $(".rn-threshold"), att = $(".rn-attention");
  const classSel = $(".rn-class"), message = $(".rn-message"), classList = $(".rn-classes"), status = $(".rn-status");
  const trainBtn = $(".rn-train"), adaptBtn = $(".rn-adapt"), useBase = $(".rn-base"), keep = $(".rn-keepbox"), newClass = $(".rn-newclass");
  const stats = (root.rnStats = { rtts: [], kernel: [], frames: 0 });
  const view = Math.random().toString(36).slice(2);
  const canvas = document.createElement("canvas");
  const urls = {};
  let stream = null, pending = null, timer = null, n = 0, answered = [], recording = null, recTimer = null, trainStart = 0;
  let renaming = null;                               // {from: class, text: typed so far} while a name is edited in place

  const set = (k, v) => { model.set(k, v); model.save_changes(); };
  const blobUrl = (key, bytes, type) => {
    if (urls[key]) URL.revokeObjectURL(urls[key]);
    urls[key] = bytes && bytes.byteLength ? URL.createObjectURL(new Blob([bytes], { type })) : null;
    return urls[key];
  };

  function jpeg(side, quality) {
    const vw = video.videoWidth, vh = video.videoHeight, s = side ? Math.min(1, side / Math.min(vw, vh)) : 1;
    canvas.width = Math.round(vw * s);
    canvas.height = Math.round(vh * s);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise(ok => canvas.toBlob(b => b.arrayBuffer().then(ok), "image/jpeg", quality));
  }

  async function sendFrame() {
    timer = null;
    if (!stream || pending || !model.get("running") || !model.get("has_model")) return;
    if (!video.videoWidth) { timer = setTimeout(sendFrame, 50); return; }
    pending = { id: `${view}:${++n}`, t0: performance.now() };
    const buf = await jpeg(model.get("frame_side"), 0.85);
    model.send({ type: "frame", id: pending.id }, undefined, [buf]);
  }

  function onAnswer(r) {
    if (!pending || r.frame !== pending.id) return;
    const now = performance.now(), rtt = now - pending.t0;
    pending = null;
    for (const [k, v] of [["rtts", rtt], ["kernel", r.ms]]) { stats[k].push(v); if (stats[k].length > 1000) stats[k].shift(); }
    stats.frames++;
    answered.push(now);
    if (answered.length > 10) answered.shift();
    const fps = answered.length > 1 ? (answered.length - 1) * 1000 / (now - answered[0]) : 0;
    statsLine.textContent = `${fps.toFixed(1)} fps · ${Math.round(rtt)} ms per frame (${Math.round(r.ms)} ms in the kernel)`;
    const maxFps = model.get("max_fps");
    timer = setTimeout(sendFrame, maxFps > 0 ? Math.max(0, 1000 / maxFps - rtt) : 0);
  }

  function showResult() {
    const r = model.get("result") || {};
    error.textContent = r.error || "";
    if (r.error) { label.textContent = "—"; delete label.dataset.label; bars.replaceChildren(); }
    else if (r.topk) {
      label.textContent = r.shown;
      label.dataset.label = r.shown;
      label.classList.toggle("rn-unsure", !r.sure);
      bars.replaceChildren(...r.topk.map(([c, p]) => {
        const row = document.createElement("div");
        row.className = "rn-bar";
        row.innerHTML = `<span class="rn-name"></span><span class="rn-track"><span class="rn-fill"></span></span><span class="rn-pct">${pct(p)}</span>`;
        row.querySelector(".rn-name").textContent = c;
        row.querySelector(".rn-fill").style.width = pct(p);
        row.querySelector(".rn-track").style.setProperty("--t", pct(model.get("threshold")));
        return row;
      }));
    }
    onAnswer(r);
  }

  async function recordFrame() {
    if (!recording || !stream || !video.videoWidth) return;
    model.send({ type: "record", label: recording }, undefined, [await jpeg(0, 0.9)]);
  }

  function toggleRecord(c) {
    clearInterval(recTimer);
    recording = recording === c ? null : c;
    if (recording) { set("selected", c); recTimer = setInterval(recordFrame, 1000 / Math.max(0.5, model.get("record_fps"))); }
    showClasses();
  }

  function renameBox(c) {
    // The class name as a text box, in place of its button: Enter (or leaving it) renames, Esc keeps the old name.
    const box = document.createElement("input");
    box.className = "rn-rename";
    box.value = renaming.text;
    box.title = "Enter renames, Esc cancels";
    box.oninput = () => { renaming.text = box.value; };
    const done = keep => {
      if (!renaming || !box.isConnected) return;                      // (a redraw replaced the box: not an answer)
      const name = box.value.trim();
      renaming = null;
      if (keep && name && name !== c) model.send({ type: "rename", old: c, name });
      showClasses();
    };
    box.onkeydown = e => { if (e.key === "Enter") done(true); else if (e.key === "Escape") done(false); };
    box.onblur = () => done(true);
    setTimeout(() => { box.focus(); box.setSelectionRange(box.value.length, box.value.length); });
    return box;
  }

  function showClasses() {
    const classes = model.get("classes"), counts = model.get("counts"), thumbs = model.get("thumbs"), sel = model.get("selected");
    if (recording && !classes.includes(recording)) toggleRecord(recording);
    classList.replaceChildren(...classes.map(c => {
      const row = document.createElement("div");
      row.className = "rn-classrow" + (c === sel ? " rn-selected" : "");
      row.dataset.class = c;
      row.innerHTML = `<button class="rn-pick" title="pick (double-click to rename)"></button><span class="rn-count"></span>
        <button class="rn-rec"></button><span class="rn-thumbs"></span><button class="rn-remove" title="remove this class">✕</button>`;
      const pick = row.querySelector(".rn-pick"), rec = row.querySelector(".rn-rec");
      pick.textContent = c;
      pick.onclick = () => set("selected", c);
      pick.ondblclick = () => { renaming = { from: c, text: c }; showClasses(); };
      if (renaming && renaming.from === c) pick.replaceWith(renameBox(c));
      row.querySelector(".rn-count").textContent = `${counts[c] || 0} photos`;
      rec.textContent = recording === c ? "■ Stop" : "● Record";
      rec.classList.toggle("rn-recording", recording === c);
      rec.disabled = !stream;
      rec.title = stream ? `record ${model.get("record_fps")} frames a second as photos of ${c}` : "start the camera to record (or upload photos)";
      rec.onclick = () => toggleRecord(c);
      row.querySelector(".rn-remove").onclick = () => { if (recording === c) toggleRecord(c); model.send({ type: "remove", name: c }); };
      row.querySelector(".rn-thumbs").replaceChildren(...(thumbs[c] || []).map((b, i) => {
        const img = document.createElement("img");
        img.src = blobUrl(`thumb:${c}:${i}`, b, "image/jpeg");
        return img;
      }));
      return row;
    }));
    classSel.replaceChildren(...classes.map(c => new Option(c, c, false, c === sel)));
  }

  function showTraining() {
    const busy = model.get("training");
    trainBtn.disabled = adaptBtn.disabled = busy;
    trainBtn.textContent = busy ? "Training…" : "Train";
    adaptBtn.hidden = !model.get("base_name");
    if (busy && !trainStart) trainStart = performance.now();
    if (!busy) trainStart = 0;
    status.textContent = model.get("status");
    $(".rn-usebase").hidden = !model.get("base_name");
    $(".rn-basename").textContent = model.get("base_name");
    useBase.checked = model.get("use_base");
    $(".rn-keep").hidden = !model.get("base_name") || !model.get("use_base");
    keep.checked = model.get("keep_classes");
  }

  function onModel() {
    if (!model.get("has_model")) { label.textContent = "no model yet"; label.classList.add("rn-unsure"); delete label.dataset.label; }
    att.disabled = !model.get("can_overlay");
    if (model.get("has_model") && !pending) sendFrame();
  }

  function showOverlay() {
    const url = model.get("attention") && blobUrl("overlay", model.get("overlay"), "image/png");
    overlay.hidden = !url;
    if (url) overlay.src = url;
    overlay.style.objectFit = model.get("resize") === "squish" ? "fill" : "contain";
  }

  function showStill() {
    const url = blobUrl("still", model.get("still"), "");
    still.hidden = !url || !!stream;
    if (url) still.src = url;
  }

  async function listCameras() {
    const cams = (await navigator.mediaDevices.enumerateDevices()).filter(d => d.kind === "videoinput");
    const current = stream && stream.getVideoTracks()[0].getSettings().deviceId;
    camSel.replaceChildren(...cams.map((d, i) => new Option(d.label || `camera ${i + 1}`, d.deviceId, false, d.deviceId === current)));
    camSel.hidden = cams.length < 2;
  }

  function fail(why) {
    model.set("camera_error", why);
    nocam.textContent = `${why} You can upload a photo below instead.`;
    set("running", false);
  }

  async function start() {
    if (stream) return;
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia))
      return fail("This page cannot use a camera: browsers allow it only on https:// pages and on localhost.");
    nocam.textContent = "Asking for the camera…";
    nocam.hidden = false;
    let s;
    try {
      s = await navigator.mediaDevices.getUserMedia({ audio: false, video: camSel.value ? { deviceId: { exact: camSel.value } } : true });
    } catch (e) {
      return fail(e.name === "NotAllowedError" ? "Camera permission was refused (allow it in the address bar, then press Start)."
        : e.name === "NotFoundError" ? "No camera was found." : `The camera could not be opened (${e.name}: ${e.message}).`);
    }
    if (!model.get("running") || stream) { s.getTracks().forEach(t => t.stop()); return; }
    stream = s;
    video.srcObject = stream;
    video.play().catch(() => {});
    nocam.hidden = true;
    video.hidden = false;
    showStill();
    set("camera_error", "");
    listCameras();
    showClasses();
    sendFrame();
  }

  function stop() {
    clearTimeout(timer);
    if (recording) toggleRecord(recording);
    if (stream) stream.getTracks().forEach(t => t.stop());
    stream = null;
    pending = null;
    video.srcObject = null;
    video.hidden = true;
    if (!model.get("camera_error")) nocam.textContent = "Camera off: press Start.";
    nocam.hidden = false;
    showStill();
  }

  function onRunning() {
    startBtn.textContent = model.get("running") ? "Stop" : "Start";
    model.get("running") ? start() : stop();
  }

  function onThreshold() {
    thr.value = model.get("threshold");
    $(".rn-tvalue").textContent = pct(model.get("threshold"));
  }

  startBtn.onclick = () => set("running", !model.get("running"));
  camSel.onchange = () => { if (stream) { stop(); start(); } };
  thr.oninput = () => set("threshold", parseFloat(thr.value));
  att.onchange = () => set("attention", att.checked);
  $(".rn-save").onclick = async () => {
    const buffers = stream && video.videoWidth ? [await jpeg(0, 0.92)] : [];
    model.send({ type: "snapshot", label: classSel.value }, undefined, buffers);
  };
  $(".rn-add").onclick = () => { if (newClass.value.trim()) model.send({ type: "add", name: newClass.value.trim() }); newClass.value = ""; };
  newClass.onkeydown = e => { if (e.key === "Enter") $(".rn-add").click(); };
  trainBtn.onclick = () => model.send({ type: "train" });
  adaptBtn.onclick = () => model.send({ type: "adapt" });
  useBase.onchange = () => set("use_base", useBase.checked);
  keep.onchange = () => set("keep_classes", keep.checked);
  $(".rn-export").onclick = () => model.send({ type: "export" });
  att.checked = model.get("attention");
  att.disabled = !model.get("can_overlay");
  if (att.disabled) att.parentElement.title = "This model has no spatial attention to show (it needs attention='ours' or 'cbam', and the PyTorch backend).";

  const handlers = [["change:result", showResult], ["change:overlay change:attention", showOverlay], ["change:still", showStill],
    ["change:running", onRunning], ["change:threshold", onThreshold],
    ["change:message", () => { message.textContent = model.get("message"); }],
    ["change:classes change:counts change:thumbs change:selected", showClasses], ["change:training change:status change:use_base change:keep_classes", showTraining],
    ["change:has_model change:can_overlay", onModel]];
  for (const [ev, f] of handlers) model.on(ev, f);
  onThreshold(); showResult(); showOverlay(); showStill(); onRunning(); showClasses(); showTraining(); onModel();
  return () => { clearInterval(recTimer); stop(); for (const [ev, f] of handlers) model.off(ev, f); Object.keys(urls).forEach(k => blobUrl(k, null)); };
}

export default { render };
