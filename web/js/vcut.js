// vcut web extension: one colour for the pack's nodes, and the guidance step bar on Cut Step Scheduler.
// Plain ES module served by ComfyUI from WEB_DIRECTORY (/extensions/<pack folder>/js/vcut.js); no build step.
// The motion-vector and salient-mask previews need nothing here: the Python nodes return ui.PreviewImage, which
// the frontend shows on the node like any other preview.
import { app } from "../../../scripts/app.js";

export const VCUT_COLOR = "#1d4e4e";    // title bar: dark teal
export const VCUT_BGCOLOR = "#15393a";  // body
export const GUIDED_COLOR = "#e0a030";  // steps with CFG (semantic binding)
export const UNGUIDED_COLOR = "#3f8fcf"; // steps after the cut (conditional only)
export const DEFAULT_STEPS = 25;         // drawn when no sampler is connected (the paper's 25-step schedule)
const BAR_HEIGHT = 78;                   // room under the widgets for the step bar and its text

/** A node type or node of this pack: node type starting "VCUT" or category starting "vcut/". */
export function isVcutNode(type, category) {
    return (type || "").startsWith("VCUT") || (category || "").startsWith("vcut/");
}

/** Python's round() for a float: round half to even (cut/schedule.py uses int(round(fraction * N))). */
export function pyRound(x) {
    const floor = Math.floor(x);
    const diff = x - floor; // exact in binary floating point, as Python's comparison is
    if (diff > 0.5) return floor + 1;
    if (diff < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The guidance split the Python side applies (nodes/vcut_nodes.py, cut/schedule.py):
 * cut_fraction > 0 overrides cut_step with c = round(fraction * N) + 1; steps 1..c-1 are guided, c..N are not;
 * c past the last step means every step is guided; auto_threshold > 0 may cut earlier at run time ("auto").
 */
export function cutSplit(cutStep, cutFraction, autoThreshold, steps) {
    const n = Math.max(0, Math.floor(steps));
    if (!(cutFraction >= 0 && cutFraction <= 1)) {
        return { steps: n, cut: null, guided: 0, unguided: 0, auto: false,
                 error: `cut_fraction must be 0 or in (0, 1], got ${cutFraction}` };
    }
    const cut = cutFraction > 0 ? pyRound(cutFraction * n) + 1 : Math.max(1, Math.floor(cutStep));
    const guided = Math.min(cut - 1, n); // VCUT Eq. 3-4: CFG in steps 1..c-1
    return { steps: n, cut, guided, unguided: n - guided, auto: autoThreshold > 0, error: null };
}

function widgetValue(node, name) {
    return node.widgets?.find((w) => w.name === name)?.value;
}

/** Step count a sampler node runs on its sigma schedule (ComfyUI's KSamplerAdvanced slices it). */
function samplerSteps(node) {
    const steps = Number(widgetValue(node, "steps"));
    if (!Number.isFinite(steps)) return null;
    if (node.type === "KSamplerAdvanced") {
        const start = Number(widgetValue(node, "start_at_step")) || 0;
        const end = Number(widgetValue(node, "end_at_step"));
        return Math.max(0, Math.min(Number.isFinite(end) ? end : steps, steps) - start);
    }
    return steps;
}

const STEP_NODES = new Set(["KSampler", "KSamplerAdvanced", "BasicScheduler"]);

/** Follows the MODEL output through MODEL-passing nodes (breadth first) to the first sampler with a step count. */
export function findSampler(node) {
    const seen = new Set([node.id]);
    const queue = [node];
    while (queue.length) {
        const current = queue.shift();
        (current.outputs || []).forEach((output, slot) => {
            if (output.type !== "MODEL") return;
            for (const target of current.getOutputNodes(slot) || []) {
                if (seen.has(target.id)) continue;
                seen.add(target.id);
                queue.push(target);
            }
        });
        if (current !== node && STEP_NODES.has(current.type)) {
            const steps = samplerSteps(current);
            if (steps !== null) return { node: current, steps };
        }
    }
    return null;
}

/** Split for this Cut Step Scheduler node as drawn now; also kept on node.vcutStepSplit. */
function computeSplit(node) {
    const sampler = node.graph ? findSampler(node) : null;
    const split = cutSplit(Number(widgetValue(node, "cut_step")), Number(widgetValue(node, "cut_fraction")),
                           Number(widgetValue(node, "auto_threshold")), sampler ? sampler.steps : DEFAULT_STEPS);
    split.sampler = sampler ? sampler.node.type : null;
    split.samplerId = sampler ? sampler.node.id : null;
    split.summary = summary(split);
    node.vcutStepSplit = split;
    return split;
}

function summary(split) {
    const { steps, cut, guided } = split;
    if (split.error) return split.error;
    if (steps === 0) return "the sampler runs 0 steps";
    let text;
    if (guided >= steps) text = `all ${steps} steps guided (CFG), nothing cut`;
    else if (guided === 0) text = `no guidance: steps 1-${steps} cond only`;
    else text = `steps 1-${guided} guided (CFG), ${guided + 1}-${steps} cond only (cut step ${cut})`;
    return split.auto ? `${text}; auto may cut earlier` : text;
}

function widgetsBottom(node) {
    let bottom = 0;
    for (const w of node.widgets || []) {
        const y = w.y ?? w.last_y;
        if (w.hidden || y === undefined) continue;
        bottom = Math.max(bottom, y + (w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT));
    }
    return bottom;
}

function drawStepBar(node, ctx) {
    if (node.flags?.collapsed) return;
    const split = computeSplit(node);
    const pad = 10;
    const top = Math.max(widgetsBottom(node) + 4, node.size[1] - BAR_HEIGHT);
    if (node.size[1] < top + BAR_HEIGHT) node.size[1] = top + BAR_HEIGHT; // stored workflows may be shorter
    const width = node.size[0] - 2 * pad;
    const barY = top + 22;
    const barH = 16;
    node.vcutStepBar = { x: pad, y: barY, width, height: barH }; // node-local geometry (tests read it)

    ctx.save();
    ctx.font = "12px Arial, sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillStyle = split.error ? "#ff7070" : "#dddddd";
    ctx.fillText(fit(ctx, split.summary, width), pad, top + 10);
    const n = Math.max(split.steps, 1);
    const cell = width / n;
    for (let i = 0; i < split.steps; i++) {
        ctx.fillStyle = i < split.guided ? GUIDED_COLOR : UNGUIDED_COLOR;
        ctx.fillRect(pad + i * cell, barY, Math.max(cell - (cell > 4 ? 1 : 0), 1), barH);
    }
    ctx.strokeStyle = "#000000";
    ctx.strokeRect(pad, barY, width, barH);
    // legend: colour squares with the two stage names
    const legendY = barY + barH + 12;
    const legend = [[GUIDED_COLOR, "guided (semantic binding)"], [UNGUIDED_COLOR, "unguided (quality)"]];
    let x = pad;
    for (const [colour, label] of legend) {
        ctx.fillStyle = colour;
        ctx.fillRect(x, legendY - 5, 10, 10);
        ctx.fillStyle = "#cccccc";
        ctx.fillText(label, x + 14, legendY);
        x += 14 + ctx.measureText(label).width + 12;
    }
    const source = split.sampler ? `${split.steps} steps from ${split.sampler}`
                                 : `connect a sampler (showing ${DEFAULT_STEPS} steps)`;
    ctx.fillStyle = split.sampler ? "#999999" : "#ffb060";
    ctx.fillText(fit(ctx, source, width), pad, legendY + 18);
    ctx.restore();
}

function fit(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    while (text.length > 1 && ctx.measureText(text + "…").width > width) text = text.slice(0, -1);
    return text + "…";
}

app.registerExtension({
    name: "vcut.ui",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!isVcutNode(nodeData.name, nodeData.category)) return;
        const onNodeCreated = nodeType.prototype.onNodeCreated;
        nodeType.prototype.onNodeCreated = function () {
            const result = onNodeCreated?.apply(this, arguments);
            this.color = VCUT_COLOR; // a colour saved in a workflow still wins: configure() runs after this
            this.bgcolor = VCUT_BGCOLOR;
            return result;
        };
        if (nodeData.name !== "VCUTCutStepScheduler") return;
        const computeSize = nodeType.prototype.computeSize;
        nodeType.prototype.computeSize = function () {
            const size = computeSize.apply(this, arguments);
            size[1] += BAR_HEIGHT;
            return size;
        };
        const onDrawForeground = nodeType.prototype.onDrawForeground;
        nodeType.prototype.onDrawForeground = function (ctx) {
            const result = onDrawForeground?.apply(this, arguments);
            drawStepBar(this, ctx); // drawn every frame, so widget and link changes show at once
            return result;
        };
        const onConnectionsChange = nodeType.prototype.onConnectionsChange;
        nodeType.prototype.onConnectionsChange = function () {
            const result = onConnectionsChange?.apply(this, arguments);
            this.setDirtyCanvas?.(true, true);
            return result;
        };
    },
});
