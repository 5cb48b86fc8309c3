// vcut web extension: one colour for the pack's nodes, and the guidance step bar on Cut Step Scheduler (a widget, so
// that both node renderers show it: the LiteGraph canvas and Nodes 2.0).
// Plain ES module served by ComfyUI from WEB_DIRECTORY (/extensions/<pack folder>/js/vcut.js); no build step.
// The motion-vector and salient-mask previews need nothing here: the Python nodes return ui.PreviewImage, which
// the frontend shows on the node like any other preview.
import { app } from "../../../scripts/app.js";

export const VCUT_COLOR = "#1d4e4e";    // title bar: dark teal
export const VCUT_BGCOLOR = "#15393a";  // body
export const GUIDED_COLOR = "#e0a030";  // steps with CFG (semantic binding)
export const UNGUIDED_COLOR = "#3f8fcf"; // steps after the cut (conditional only)
export const DEFAULT_STEPS = 25;         // drawn when no sampler is connected (the paper's 25-step schedule)
const BAR_HEIGHT = 78;                   // the step bar widget's height: summary, bar, legend, step source
const MIN_CELL = 4;                      // narrower steps are drawn as two spans (guided, unguided), not as cells
const MIN_SPAN = 4;                      // a stage with at least one step is never drawn narrower than this (px)
const SCHEDULER = "VCUTCutStepScheduler";
const STEP_BAR_WIDGET = "vcut_step_bar";

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
 * The guidance split the Python side applies (nodes/cut_nodes.py, cut/schedule.py):
 * cut_fraction > 0 overrides cut_step with c = round(fraction * N) + 1; steps 1..c-1 are guided, c..N are not;
 * c past the last step means every step is guided; auto_threshold > 0 may cut earlier at run time ("auto").
 */
export function cutSplit(cutStep, cutFraction, autoThreshold, steps) {
    // A loaded workflow's widget values are not clamped by the frontend: any value may arrive here.
    const n = Math.floor(Number(steps));
    const refuse = (error) => ({ steps: 0, cut: null, guided: 0, unguided: 0, auto: false, error });
    if (!Number.isFinite(n) || n < 0) {
        return refuse(`the sampler's steps must be a whole number >= 0, got ${steps}`);
    }
    if (!(cutFraction >= 0 && cutFraction <= 1)) {
        return refuse(`cut_fraction must be 0 or in (0, 1], got ${cutFraction}`);
    }
    if (!(cutFraction > 0) && !Number.isFinite(Number(cutStep))) {
        return refuse(`cut_step must be a number, got ${cutStep}`);
    }
    const cut = cutFraction > 0 ? pyRound(cutFraction * n) + 1 : Math.max(1, Math.floor(cutStep));
    const guided = Math.min(cut - 1, n); // VCUT Eq. 3-4: CFG in steps 1..c-1
    return { steps: n, cut, guided, unguided: n - guided, auto: autoThreshold > 0, error: null };
}

function widgetValue(node, name) {
    return node.widgets?.find((w) => w.name === name)?.value;
}

/** Step count a sampler node runs on its sigma schedule (ComfyUI's KSamplerAdvanced slices it); null without a
 *  steps widget. A value that is no step count (NaN, negative, text) is returned as it is: cutSplit names it. */
function samplerSteps(node) {
    const value = widgetValue(node, "steps");
    if (value === undefined) return null;
    const steps = Number(value);
    if (!(Number.isFinite(steps) && steps >= 0)) return value;
    if (node.type === "KSamplerAdvanced") {
        const start = Math.max(0, Number(widgetValue(node, "start_at_step")) || 0);
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
    const { steps, guided } = split;
    if (split.error) return split.error;
    if (steps === 0) return "the sampler runs 0 steps";
    let text;
    if (guided >= steps) text = `all ${steps} steps guided (CFG), nothing cut`;
    else if (guided === 0) text = `no guidance: steps 1-${steps} cond only`;
    else text = `steps 1-${guided} guided (CFG), ${guided + 1}-${steps} cond only`;
    return split.auto ? `${text}; auto may cut earlier` : text;
}

/**
 * The rectangles of the bar, [x, width, guided] relative to its left end, in bounded number for any step count:
 * one cell per step (1 px apart) while a step is wider than MIN_CELL px, else two spans in proportion to the stages
 * (a stage with a step in it at least MIN_SPAN px wide). At most width / MIN_CELL + 2 rectangles.
 */
export function barRects(steps, guided, width) {
    if (!(steps > 0) || !(width > 0)) return [];
    const cell = width / steps;
    if (cell > MIN_CELL) {
        return Array.from({ length: steps }, (_, i) => [i * cell, cell - 1, i < guided]);
    }
    let split = width * guided / steps;
    if (guided > 0) split = Math.max(split, MIN_SPAN);
    if (guided < steps) split = Math.min(split, width - MIN_SPAN);
    return [[0, split, true], [split, width - split, false]].filter(([, w]) => w > 0);
}

/**
 * Draws the bar into a widget's slot: (x 0..width, y top..top+BAR_HEIGHT) of the context it is given. Both renderers
 * call this: LiteGraph with the node's canvas context (translated to the node), Nodes 2.0 with the widget's own
 * canvas (WidgetLegacy). Only reads the node: never resizes it, so drawing cannot feed back into layout. Its time
 * is bounded by the width, not by the step count (barRects).
 */
function drawStepBar(node, ctx, width, top) {
    const split = computeSplit(node);
    const pad = 10;
    const inner = width - 2 * pad;
    const barY = top + 22;
    const barH = 16;
    ctx.save();
    ctx.font = "12px Arial, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    ctx.fillStyle = split.error ? "#ff7070" : "#dddddd";
    ctx.fillText(fit(ctx, split.summary, inner), pad, top + 10);
    for (const [x, w, guided] of barRects(split.steps, split.guided, inner)) {
        ctx.fillStyle = guided ? GUIDED_COLOR : UNGUIDED_COLOR;
        ctx.fillRect(pad + x, barY, w, barH);
    }
    ctx.strokeStyle = "#000000";
    ctx.strokeRect(pad, barY, inner, barH);
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
    const source = !split.sampler ? `connect a sampler (showing ${DEFAULT_STEPS} steps)`
        : split.error ? `step count from ${split.sampler}` : `${split.steps} steps from ${split.sampler}`;
    ctx.fillStyle = split.sampler ? "#999999" : "#ffb060";
    ctx.fillText(fit(ctx, source, inner), pad, legendY + 18);
    ctx.restore();
}

function fit(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    while (text.length > 1 && ctx.measureText(text + "…").width > width) text = text.slice(0, -1);
    return text + "…";
}

/**
 * The step bar as a custom ("legacy") widget: LiteGraph draws it with the node's widgets, and Nodes 2.0
 * (Comfy.VueNodes.Enabled, where onDrawForeground never runs) renders any widget with draw() through its
 * WidgetLegacy component on a canvas of its own. Fixed height, not saved in workflows, not sent to the server.
 */
function addStepBarWidget(node) {
    return node.addCustomWidget({
        name: STEP_BAR_WIDGET,
        type: STEP_BAR_WIDGET,
        value: null,
        serialize: false,            // not in the workflow's widgets_values
        options: { serialize: false }, // not an input of the prompt
        computeSize: (width) => [width ?? node.size[0], BAR_HEIGHT],
        draw(ctx, drawnNode, width, y) {
            if (!drawnNode.flags?.collapsed) drawStepBar(drawnNode, ctx, width, y);
        },
    });
}

/** Recomputes a Cut Step Scheduler's split and asks both renderers to redraw its bar. */
function refreshStepBar(node) {
    computeSplit(node);
    node.widgets?.find((w) => w.name === STEP_BAR_WIDGET)?.triggerDraw?.(); // Nodes 2.0 redraws on request only
    node.setDirtyCanvas?.(true, true); // LiteGraph canvas
}

function refreshStepBars(graph) {
    for (const node of graph?.nodes ?? graph?._nodes ?? []) {
        if (node.type === SCHEDULER) refreshStepBar(node);
    }
}

/** Runs after() whenever the named widgets of node change (UI edits in both renderers call widget.callback). */
function onWidgetsChange(node, names, after) {
    for (const widget of node.widgets || []) {
        if (!names.includes(widget.name)) continue;
        const callback = widget.callback;
        widget.callback = function () {
            const result = callback?.apply(this, arguments);
            after();
            return result;
        };
    }
}

/** Wraps nodeType.prototype.onNodeCreated: extra(node) runs on every new node of that type, widgets in place. */
function afterNodeCreated(nodeType, extra) {
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        extra(this);
        return result;
    };
}

app.registerExtension({
    name: "vcut.ui",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        // Any node's links can change which sampler a scheduler reaches (e.g. a MODEL node in between).
        const onConnectionsChange = nodeType.prototype.onConnectionsChange;
        nodeType.prototype.onConnectionsChange = function () {
            const result = onConnectionsChange?.apply(this, arguments);
            refreshStepBars(this.graph);
            return result;
        };
        if (STEP_NODES.has(nodeData.name)) {
            afterNodeCreated(nodeType, (node) => onWidgetsChange(node, ["steps", "start_at_step", "end_at_step"],
                                                                 () => refreshStepBars(node.graph)));
        }
        if (!isVcutNode(nodeData.name, nodeData.category)) return;
        afterNodeCreated(nodeType, (node) => {
            node.color = VCUT_COLOR; // a colour saved in a workflow still wins: configure() runs after this
            node.bgcolor = VCUT_BGCOLOR;
            if (nodeData.name !== SCHEDULER) return;
            addStepBarWidget(node);
            onWidgetsChange(node, ["cut_step", "cut_fraction", "auto_threshold"], () => refreshStepBar(node));
        });
    },
    afterConfigureGraph() {
        refreshStepBars(app.graph); // a loaded workflow sets widget values without callbacks
    },
});
