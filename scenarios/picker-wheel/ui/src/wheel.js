// Drawing and turning the wheel: each option's slice is proportional to its weight; the
// pointer is at the top (angle -90 degrees).
const COLORS = ["#2b3a67", "#d7263d", "#f49d37", "#3f88c5", "#1b998b", "#8e6c8a", "#c2b97f", "#5d576b"];

function slices(options) {
  const total = options.reduce((sum, o) => sum + o.weight, 0);
  let start = 0;
  return options.map((o, i) => {
    const angle = (o.weight / total) * 2 * Math.PI;
    const slice = { label: o.label, start, end: start + angle, color: COLORS[i % COLORS.length] };
    start += angle;
    return slice;
  });
}

function drawWheel(canvas, options, rotation) {
  const ctx = canvas.getContext("2d");
  const r = canvas.width / 2;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!options || options.length === 0) {
    return;
  }
  ctx.save();
  ctx.translate(r, r);
  ctx.rotate(rotation);
  for (const s of slices(options)) {
    ctx.beginPath();
    ctx.moveTo(0, 0);
    ctx.arc(0, 0, r - 4, s.start, s.end);
    ctx.closePath();
    ctx.fillStyle = s.color;
    ctx.fill();
    ctx.save();
    ctx.rotate((s.start + s.end) / 2);
    ctx.fillStyle = "#fff";
    ctx.font = "bold 15px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(s.label.slice(0, 18), r - 16, 0);
    ctx.restore();
  }
  ctx.restore();
}

// Turns the wheel a few times and stops with the middle of slice `index` under the pointer.
function spinTo(canvas, options, from, index) {
  const s = slices(options)[index];
  const middle = (s.start + s.end) / 2;
  const pointer = -Math.PI / 2;
  let target = pointer - middle;
  while (target < from + 4 * 2 * Math.PI) {
    target += 2 * Math.PI;
  }
  const duration = 2500;
  return new Promise((resolve) => {
    const begin = performance.now();
    const frame = (now) => {
      const t = Math.min(1, (now - begin) / duration);
      const eased = 1 - Math.pow(1 - t, 3);
      const angle = from + (target - from) * eased;
      drawWheel(canvas, options, angle);
      if (t < 1) {
        requestAnimationFrame(frame);
      } else {
        resolve(target % (2 * Math.PI));
      }
    };
    requestAnimationFrame(frame);
  });
}
