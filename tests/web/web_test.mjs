// Browser checks of the vcut web extension against a running ComfyUI server (started by
// tests/integration/test_web.py). Debian's chromium driven by playwright-core; no network beyond loopback.
//
//   node tests/web/web_test.mjs --url http://127.0.0.1:PORT --workflows workflows --out DIR \
//        --image vcut_frames.png --fractions '[[0.64,25,17],...]' --renderer classic|nodes2
//
// --renderer says which node renderer the server's settings select (the LiteGraph canvas, or Nodes 2.0 = Vue
// nodes); the checks are the same in both, only where a node sits on screen is found differently.
// Prints one JSON report line (prefix "VCUT_WEB_REPORT ") and exits 1 on the first failed check.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function parseArgs(argv) {
    const args = {};
    for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
    for (const key of ["url", "workflows", "out", "image"]) {
        if (!args[key]) throw new Error(`missing --${key}`);
    }
    args.fractions = JSON.parse(args.fractions || "[]");
    args.renderer = args.renderer || "classic";
    if (!["classic", "nodes2"].includes(args.renderer)) throw new Error(`--renderer ${args.renderer}`);
    return args;
}

function check(condition, message) {
    if (!condition) throw new Error(`check failed: ${message}`);
}

const rgbDistance = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));
const hexToRgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
const nextFrames = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
let page; // the one tab of the run
const LIVENESS_MS = 20000; // a page that has not answered a call in 20 s is hung (the times themselves are reported)

/** Screen rectangle of a node with its title, in page pixels: the Vue node's element in Nodes 2.0, else from the
 *  canvas transform. */
async function nodeClip(id, nodes2) {
    return page.evaluate(([id, nodes2]) => {
        const app = window.app;
        if (nodes2) {
            const el = document.querySelector(`[data-node-id="${id}"]`);
            if (!el) return null;
            const r = el.getBoundingClientRect();
            return { x: r.left - 8, y: r.top - 8, width: r.width + 16, height: r.height + 16 };
        }
        const node = app.graph.getNodeById(id);
        const s = app.canvas.ds.scale;
        const [x0, y0] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1]]);
        const rect = app.canvas.canvas.getBoundingClientRect();
        return { x: rect.left + x0 - 8, y: rect.top + y0 - 38 * s, width: node.size[0] * s + 16,
                 height: (node.size[1] + 46) * s };
    }, [id, nodes2]);
}

/** The step bar as the user sees it: a screenshot of the node, its row with the most bar-coloured pixels, read as
 *  runs of guided / unguided colour split by the 1 px gaps between cells. Returns [guided cells, unguided cells]
 *  (and the order check) or null when no bar is on screen. */
async function stepBarOnScreen(id, nodes2, colours, shotPath) {
    const clip = await nodeClip(id, nodes2);
    if (!clip) return null;
    const png = await page.screenshot({ clip, path: shotPath });
    return page.evaluate(async ([b64, guided, unguided]) => {
        const img = new Image();
        img.src = "data:image/png;base64," + b64;
        await img.decode();
        const canvas = document.createElement("canvas");
        canvas.width = img.width;
        canvas.height = img.height;
        const ctx = canvas.getContext("2d");
        ctx.drawImage(img, 0, 0);
        const data = ctx.getImageData(0, 0, img.width, img.height).data;
        const near = (i, rgb) => Math.max(...rgb.map((v, k) => Math.abs(v - data[i + k]))) <= 12;
        const classify = (x, y) => {
            const i = 4 * (y * img.width + x);
            return near(i, guided) ? 1 : near(i, unguided) ? 2 : 0;
        };
        let best = { row: -1, count: 0 };
        for (let y = 0; y < img.height; y++) {
            let count = 0;
            for (let x = 0; x < img.width; x++) count += classify(x, y) ? 1 : 0;
            if (count > best.count) best = { row: y, count };
        }
        if (best.row < 0) return null;
        const runs = []; // [colour class, length] of the cells along that row
        let current = 0;
        for (let x = 0; x <= img.width; x++) {
            const c = x < img.width ? classify(x, best.row) : 0;
            if (c && c === current) runs[runs.length - 1][1]++;
            else if (c) runs.push([c, 1]);
            current = c;
        }
        const cells = runs.filter(([, n]) => n >= 3); // anti-aliased edges are not cells
        const guidedCells = cells.filter(([c]) => c === 1).length;
        const ordered = cells.every(([c], i) => c === (i < guidedCells ? 1 : 2));
        return { cells: [guidedCells, cells.length - guidedCells], ordered, row: best.row, width: img.width };
    }, [png.toString("base64"), colours.guidedRgb, colours.unguidedRgb]);
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    fs.mkdirSync(args.out, { recursive: true });
    const report = { workflows: {}, stepBar: [], previews: {}, screenshots: [], consoleErrors: [], failedRequests: [] };
    const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "vcut-chromium-"));
    const context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1600, height: 900 },
    });
    const nodes2 = args.renderer === "nodes2";
    try {
        page = context.pages()[0] || await context.newPage();
        page.on("pageerror", (e) => report.consoleErrors.push(String(e)));
        page.on("console", (m) => { if (m.type() === "error") report.consoleErrors.push(m.text()); });
        page.on("response", (r) => { if (r.status() >= 400) report.failedRequests.push(`${r.status()} ${r.url()}`); });
        // a fresh user: no tutorial dialog, and no minimap / render info over the screenshots
        const settings = { "Comfy.TutorialCompleted": true, "Comfy.Minimap.Visible": false,
                           "Comfy.Graph.CanvasInfo": false,
                           "LiteGraph.Canvas.MinFontSizeForLOD": 0 }; // full detail in the zoomed-out screenshot
        const posted = await fetch(args.url + "/settings", { method: "POST", body: JSON.stringify(settings) });
        check(posted.ok, `POST /settings: ${posted.status}`);
        await page.goto(args.url, { waitUntil: "load" });
        await page.waitForFunction(() => window.app?.graph
            && window.LiteGraph?.registered_node_types?.VCUTCutStepScheduler
            && window.app.extensionManager && window.app.extensions?.some((e) => e.name === "vcut.ui"),
            null, { timeout: 60000 });
        await page.evaluate(() => document.querySelectorAll(".p-dialog-mask").forEach((d) => d.remove()));
        const frontend = await page.evaluate(() => ({
            version: window.__COMFYUI_FRONTEND_VERSION__ ?? null,
            vueNodes: window.app.extensionManager.setting.get("Comfy.VueNodes.Enabled") ?? null,
        }));
        report.frontendVersion = frontend.version;
        report.vueNodes = frontend.vueNodes;
        check(frontend.vueNodes === nodes2,
              `Comfy.VueNodes.Enabled is ${frontend.vueNodes} for --renderer ${args.renderer}`);

        // The extension's own module (same URL, so the same instance the app loaded).
        const extUrl = await page.evaluate(async () => (await (await fetch("/extensions")).json())
            .find((u) => u.endsWith("/js/vcut.js")));
        check(extUrl, "ComfyUI serves web/js/vcut.js under /extensions (WEB_DIRECTORY)");
        report.extension = extUrl;
        const colours = await page.evaluate(async (u) => {
            const m = await import(u);
            return { color: m.VCUT_COLOR, bgcolor: m.VCUT_BGCOLOR, guided: m.GUIDED_COLOR, unguided: m.UNGUIDED_COLOR };
        }, extUrl);
        colours.guidedRgb = hexToRgb(colours.guided);
        colours.unguidedRgb = hexToRgb(colours.unguided);

        // 1. cut rule: the JavaScript split equals Python's cut_step_from_fraction on the given cases.
        const jsCuts = await page.evaluate(async ([u, cases]) => {
            const m = await import(u);
            return cases.map(([f, n]) => m.cutSplit(17, f, 0, n).cut);
        }, [extUrl, args.fractions]);
        args.fractions.forEach(([f, n, c], i) => check(jsCuts[i] === c,
            `cut_fraction ${f} of ${n} steps: JS c=${jsCuts[i]}, Python c=${c}`));
        report.fractionCases = args.fractions.length;

        // 2. every workflow loads with all its node types registered; the pack's nodes carry the pack colour.
        const files = fs.readdirSync(args.workflows).filter((f) => f.endsWith(".json")).sort();
        check(files.length > 0, `no workflows in ${args.workflows}`);
        for (const file of files) {
            const json = JSON.parse(fs.readFileSync(path.join(args.workflows, file), "utf8"));
            const result = await page.evaluate(async (graph) => {
                await window.app.loadGraphData(graph);
                const nodes = window.app.graph._nodes;
                const registered = window.LiteGraph.registered_node_types;
                // a widget input that the workflow links (Video Extend's overlap output -> Join Video Segments'
                // overlap) must reach the prompt as a link, not as the widget's value
                const links = window.app.graph.links;
                const { output } = await window.app.graphToPrompt();
                const linkedWidgets = graph.nodes.flatMap((n) => (n.inputs ?? [])
                    .filter((inp) => inp.widget && inp.link != null && output[String(n.id)])
                    .map((inp) => ({ node: n.id, name: inp.name, sent: output[String(n.id)].inputs[inp.name] })));
                return {
                    count: nodes.length,
                    links: links instanceof Map ? links.size : Object.keys(links ?? {}).length,
                    linkedWidgets,
                    missing: [...new Set([...graph.nodes.map((n) => n.type), ...nodes.map((n) => n.type)])]
                        .filter((t) => !registered[t]),
                    pack: nodes.filter((n) => n.type.startsWith("VCUT"))
                        .map((n) => ({ type: n.type, color: n.color, bgcolor: n.bgcolor })),
                };
            }, json);
            await page.evaluate(() => document.querySelectorAll(".p-dialog-mask").forEach((d) => d.remove()));
            check(result.missing.length === 0, `${file}: missing node types ${result.missing}`);
            check(result.count === json.nodes.length, `${file}: ${result.count} nodes loaded of ${json.nodes.length}`);
            check(result.links === json.links.length, `${file}: ${result.links} links loaded of ${json.links.length}`);
            for (const w of result.linkedWidgets) {
                check(Array.isArray(w.sent), `${file}: node ${w.node}'s ${w.name} is linked, but the frontend sends `
                      + `${JSON.stringify(w.sent)}`);
            }
            for (const n of result.pack) {
                check(n.color === colours.color && n.bgcolor === colours.bgcolor,
                      `${file}: ${n.type} colour ${n.color}/${n.bgcolor}, `
                      + `expected ${colours.color}/${colours.bgcolor}`);
            }
            report.workflows[file] = { nodes: result.count, packNodes: result.pack.length,
                                       linkedWidgets: result.linkedWidgets.length };
        }

        // 3. step bar on Cut Step Scheduler in the VCUT workflow, with the connected KSampler's steps.
        const vcutFile = path.join(args.workflows, "svd_vcut_img2vid.json");
        await page.evaluate(async (g) => { await window.app.loadGraphData(g); },
                            JSON.parse(fs.readFileSync(vcutFile, "utf8")));
        await page.evaluate(() => document.querySelectorAll(".p-dialog-mask").forEach((d) => d.remove()));
        await page.evaluate(() => { // fit the whole workflow (nodes and groups) into the canvas
            const app = window.app;
            const boxes = [...app.graph._nodes.map((n) => [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30]),
                           ...app.graph._groups.map((g) => [g.pos[0], g.pos[1], g.size[0], g.size[1]])];
            const x0 = Math.min(...boxes.map((b) => b[0])), y0 = Math.min(...boxes.map((b) => b[1]));
            const x1 = Math.max(...boxes.map((b) => b[0] + b[2])), y1 = Math.max(...boxes.map((b) => b[1] + b[3]));
            const rect = app.canvas.canvas.getBoundingClientRect();
            const margin = { left: 70, top: 90, right: 20, bottom: 20 }; // sidebar and top bar cover the canvas edges
            const w = rect.width - margin.left - margin.right, h = rect.height - margin.top - margin.bottom;
            const scale = Math.min(w / (x1 - x0), h / (y1 - y0));
            app.canvas.ds.scale = scale;
            app.canvas.ds.offset = [-x0 + (margin.left + (w - (x1 - x0) * scale) / 2) / scale,
                                    -y0 + (margin.top + (h - (y1 - y0) * scale) / 2) / scale];
            app.canvas.setDirty(true, true);
        });
        await page.waitForTimeout(500);
        await page.screenshot({ path: path.join(args.out, "workflow_vcut.png") });
        report.screenshots.push("workflow_vcut.png");

        // the renderer really is the one asked for: Vue nodes are DOM elements with data-node-id
        const vueElements = await page.evaluate(() => document.querySelectorAll(".lg-node[data-node-id]").length);
        check(nodes2 ? vueElements > 0 : vueElements === 0,
              `${vueElements} Vue node elements with --renderer ${args.renderer}`);
        report.vueNodeElements = vueElements;

        const schedId = await page.evaluate(
            () => window.app.graph._nodes.find((n) => n.type === "VCUTCutStepScheduler").id);
        const sizeOf = () => page.evaluate((id) => [...window.app.graph.getNodeById(id).size], schedId);
        report.sizes = [await sizeOf()];
        report.saved = await page.evaluate(async (id) => { // the bar widget is not saved and not sent
            const node = window.app.graph.getNodeById(id);
            const { output } = await window.app.graphToPrompt();
            return { widgetsValues: node.serialize().widgets_values.length,
                     promptInputs: Object.keys(output[String(id)].inputs).sort() };
        }, schedId);
        const focus = (id) => page.evaluate(async (id) => { // the node at scale 1.25, clear of the side and top bars
            const app = window.app;
            const node = app.graph.getNodeById(id);
            app.canvas.ds.scale = 1.25;
            app.canvas.ds.offset = [-node.pos[0] + 400, -node.pos[1] + 260];
            app.canvas.setDirty(true, true);
            app.canvas.draw(true, true);
        }, id);
        /** Waits until the split is computed and the bar on screen shows expectCells (or gives up after ~3 s). */
        const barShows = async (id, expectCells, shotPath) => {
            let seen = null;
            for (let i = 0; i < 15; i++) {
                await nextFrames();
                seen = await stepBarOnScreen(id, nodes2, colours, shotPath);
                if (seen && seen.ordered && seen.cells[0] === expectCells[0] && seen.cells[1] === expectCells[1]) break;
                await page.waitForTimeout(200);
            }
            return seen;
        };
        const cases = [
            { set: {}, expect: { steps: 25, cut: 17, guided: 16 } },                        // the workflow as shipped
            { set: { steps: 30 }, expect: { steps: 30, cut: 17, guided: 16 } },             // sampler steps change
            { set: { cut_step: 40 }, expect: { steps: 30, cut: 40, guided: 30 } },          // past the last step
            { set: { steps: 25, cut_step: 1 }, expect: { steps: 25, cut: 1, guided: 0 } },  // no guidance
            { set: { cut_fraction: 0.5 }, expect: { steps: 25, cut: 13, guided: 12 } },     // round(12.5) = 12
            { set: { cut_fraction: 0.64 }, expect: { steps: 25, cut: 17, guided: 16 } },    // the paper: 0.64 of 25
            { set: { cut_fraction: 0, cut_step: 17, auto_threshold: 0.05 },
              expect: { steps: 25, cut: 17, guided: 16 }, auto: true },                     // auto noted
            { set: { auto_threshold: 0 }, expect: { steps: 25, cut: 17, guided: 16 }, shot: true },
        ];
        await focus(schedId);
        for (const c of cases) {
            // a widget edit as the UI makes it: the value, then the widget's callback
            await page.evaluate(async ([set, id]) => {
                const app = window.app;
                const sched = app.graph.getNodeById(id);
                const sampler = app.graph._nodes.find((n) => n.type === "KSampler");
                for (const [name, value] of Object.entries(set)) {
                    const target = name === "steps" ? sampler : sched;
                    const w = target.widgets.find((x) => x.name === name);
                    w.value = value;
                    w.callback?.(value, app.canvas, target);
                }
            }, [c.set, schedId]);
            const want = [c.expect.guided, c.expect.steps - c.expect.guided];
            const shown = await barShows(schedId, want,
                                         c.shot ? path.join(args.out, "cut_step_scheduler.png") : undefined);
            const split = await page.evaluate((id) => {
                const { steps, cut, guided, sampler, summary } = window.app.graph.getNodeById(id).vcutStepSplit;
                return { steps, cut, guided, sampler, summary };
            }, schedId);
            for (const key of Object.keys(c.expect)) {
                check(split[key] === c.expect[key],
                      `step bar after ${JSON.stringify(c.set)}: ${key}=${split[key]}, expected ${c.expect[key]}`);
            }
            check(split.sampler === "KSampler", `step count read from ${split.sampler}, expected KSampler`);
            check(split.summary.includes("auto") === Boolean(c.auto), `auto note in "${split.summary}"`);
            check(shown && shown.ordered,
                  `step bar after ${JSON.stringify(c.set)}: not on screen (${JSON.stringify(shown)})`);
            report.stepBar.push({ set: c.set, ...split, cells: shown.cells });
            if (c.shot) report.screenshots.push("cut_step_scheduler.png");
            report.sizes.push(await sizeOf());
        }
        for (let i = 0; i < 5; i++) { // more frames change nothing: drawing does not resize the node
            await page.evaluate(() => { window.app.canvas.setDirty(true, true); window.app.canvas.draw(true, true); });
            await nextFrames();
        }
        report.sizes.push(await sizeOf());
        report.sizeStable = report.sizes.every((s) => s[0] === report.sizes[0][0] && s[1] === report.sizes[0][1]);
        report.fits = await page.evaluate((id) => { // the node is tall enough for its widgets and the bar
            const node = window.app.graph.getNodeById(id);
            return { size: [...node.size], computed: [...node.computeSize()] };
        }, schedId);
        check(report.fits.size[1] >= report.fits.computed[1] - 1, `scheduler ${JSON.stringify(report.fits)}`);

        // 3b. no sampler connected: the bar says so and draws the default.
        const loneId = await page.evaluate(() => {
            const app = window.app;
            app.graph.clear();
            const node = window.LiteGraph.createNode("VCUTCutStepScheduler");
            node.pos = [100, 100];
            app.graph.add(node);
            return node.id;
        });
        await focus(loneId);
        const loneShown = await barShows(loneId, [16, 9]);
        const lone = await page.evaluate((id) => ({ ...window.app.graph.getNodeById(id).vcutStepSplit }), loneId);
        check(lone.sampler === null && lone.steps === 25 && lone.guided === 16,
              `unconnected scheduler: ${JSON.stringify(lone)}`);
        check(loneShown?.ordered, `unconnected scheduler: bar not on screen ${JSON.stringify(loneShown)}`);
        report.unconnected = { summary: lone.summary, cells: loneShown.cells };

        // 3c. through another MODEL node to a KSamplerAdvanced: its schedule is steps 5..25 of 30 = 20 steps.
        await page.evaluate(async () => {
            const app = window.app;
            const sched = app.graph._nodes.find((n) => n.type === "VCUTCutStepScheduler");
            const guidance = window.LiteGraph.createNode("VideoLinearCFGGuidance");
            const sampler = window.LiteGraph.createNode("KSamplerAdvanced");
            guidance.pos = [470, 100];
            sampler.pos = [800, 100];
            app.graph.add(guidance);
            app.graph.add(sampler);
            const set = (name, value) => { sampler.widgets.find((w) => w.name === name).value = value; };
            set("steps", 30);
            set("start_at_step", 5);
            set("end_at_step", 25);
            guidance.connect(0, sampler, 0);
            sched.connect(0, guidance, 0); // a link change: the bar follows it
        });
        const advancedShown = await barShows(loneId, [16, 4]);
        const advanced = await page.evaluate((id) => ({ ...window.app.graph.getNodeById(id).vcutStepSplit }), loneId);
        check(advanced.sampler === "KSamplerAdvanced" && advanced.steps === 20 && advanced.guided === 16,
              `scheduler -> VideoLinearCFGGuidance -> KSamplerAdvanced: ${JSON.stringify(advanced)}`);
        check(advancedShown?.ordered, `advanced: bar not on screen ${JSON.stringify(advancedShown)}`);
        report.advanced = { summary: advanced.summary, cells: advancedShown.cells };

        // 3d. a workflow file whose KSampler has 10^9 steps (the frontend does not clamp widget values when a workflow
        // loads): the page answers, the bar is drawn as two spans, and its drawing time does not grow with the steps.
        // Then values that are no step count (negative, text, a JSON number that parses as Infinity): named in the
        // bar's summary. The times are reported, not compared; LIVENESS_MS only tells a hung page from a slow one.
        const vcutJson = JSON.parse(fs.readFileSync(vcutFile, "utf8"));
        const stepsIndex = await page.evaluate(async (g) => { // where KSampler's steps sits in widgets_values
            await window.app.loadGraphData(g);
            const sampler = window.app.graph._nodes.find((n) => n.type === "KSampler");
            const values = sampler.serialize().widgets_values;
            const index = sampler.widgets.findIndex((w) => w.name === "steps");
            return values[index] === sampler.widgets[index].value ? index : -1;
        }, vcutJson);
        check(stepsIndex >= 0, "KSampler's steps widget found in its widgets_values");
        const withSteps = (steps) => {
            const g = structuredClone(vcutJson);
            g.nodes.find((n) => n.type === "KSampler").widgets_values[stepsIndex] = steps;
            return g;
        };
        const HUNG = Symbol("hung");
        const withinLiveness = async (what, promise) => {
            const t0 = Date.now();
            const result = await Promise.race([promise, new Promise((r) => setTimeout(() => r(HUNG), LIVENESS_MS))]);
            check(result !== HUNG, `${what}: no answer within ${LIVENESS_MS} ms: the page hangs`);
            return { result, ms: Date.now() - t0 };
        };
        /** Loads a workflow, then times one frame and the bar widget's own draw (on a canvas of its own, so the
         *  same code path is timed in both renderers); returns the times and the scheduler's split. */
        const loadTimed = async (steps, what) => {
            const load = await withinLiveness(`${what}: loadGraphData`,
                page.evaluate(async (g) => { await window.app.loadGraphData(g); }, withSteps(steps)));
            await page.evaluate(() => document.querySelectorAll(".p-dialog-mask").forEach((d) => d.remove()));
            const frame = await withinLiveness(`${what}: two animation frames`, page.evaluate(() => {
                window.app.canvas.setDirty(true, true);
                return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            }));
            const { result } = await withinLiveness(`${what}: the bar's draw`, page.evaluate(() => {
                const app = window.app;
                const node = app.graph._nodes.find((n) => n.type === "VCUTCutStepScheduler");
                const sampler = app.graph._nodes.find((n) => n.type === "KSampler");
                const widget = node.widgets.find((w) => w.name === "vcut_step_bar");
                const ctx = document.createElement("canvas").getContext("2d");
                const t0 = performance.now();
                widget.draw(ctx, node, node.size[0], 0);
                const drawMs = performance.now() - t0;
                const { steps, cut, guided, sampler: source, summary, error } = node.vcutStepSplit;
                const value = sampler.widgets.find((w) => w.name === "steps").value;
                return { id: node.id, drawMs, split: { steps, cut, guided, sampler: source, summary, error },
                         widgetValue: typeof value === "number" && !Number.isFinite(value) ? String(value) : value };
            }));
            return { loadMs: load.ms, frameMs: frame.ms, drawMs: Math.round(result.drawMs * 100) / 100, ...result };
        };
        const huge = await loadTimed(1e9, "10^9 steps");
        check(huge.widgetValue === 1e9, `the loaded KSampler holds steps ${huge.widgetValue}, expected 10^9`);
        check(huge.split.steps === 1e9 && huge.split.guided === 16 && huge.split.sampler === "KSampler"
              && huge.split.summary.startsWith("steps 1-16 guided (CFG), 17-1000000000 cond only"),
              `10^9 steps: ${JSON.stringify(huge.split)}`);
        await focus(huge.id);
        const hugeShown = await barShows(huge.id, [1, 1], path.join(args.out, "step_bar_1e9_steps.png")); // 2 spans
        report.screenshots.push("step_bar_1e9_steps.png");
        check(hugeShown?.ordered && hugeShown.cells[0] === 1 && hugeShown.cells[1] === 1,
              `10^9 steps: the bar on screen ${JSON.stringify(hugeShown)}`);
        const usual = await loadTimed(25, "25 steps"); // the same workflow as shipped, timed the same way
        const rects = await page.evaluate(async (u) => { // rectangles the bar draws, for step counts up to 10^15
            const m = await import(u);
            return [25, 300, 1e4, 1e9, 1e15, NaN, -3].map((n) => m.barRects(n, 16, 300).length);
        }, extUrl);
        check(rects.every((n) => n <= 300 / 4 + 2), `rectangles per bar ${rects}`);
        report.hugeSteps = { steps1e9: huge, steps25: usual, liveness: LIVENESS_MS, cells: hugeShown.cells,
                             rectsFor: { 25: rects[0], 300: rects[1], 1e4: rects[2], 1e9: rects[3], 1e15: rects[4],
                                         NaN: rects[5], "-3": rects[6] } };
        report.badSteps = [];
        for (const bad of [-5, "abc", Infinity]) {
            const got = await loadTimed(bad, `steps ${String(bad)}`);
            const expect = await page.evaluate(async ([u, v]) => { // the rule itself, on what the widget holds
                const m = await import(u);
                const { steps, guided, error } = m.cutSplit(17, 0, 0, v === "Infinity" ? Infinity : v);
                return { steps, guided, error };
            }, [extUrl, got.widgetValue]);
            check(got.split.steps === expect.steps && got.split.guided === expect.guided
                  && got.split.error === expect.error,
                  `steps ${bad}: ${JSON.stringify(got)} vs ${JSON.stringify(expect)}`);
            const numeric = typeof got.widgetValue === "number" && Number.isFinite(got.widgetValue)
                && got.widgetValue >= 0;
            check(numeric ? got.split.error === null : /steps must be a whole number/.test(got.split.error ?? ""),
                  `steps ${bad} (the widget holds ${got.widgetValue}): ${JSON.stringify(got.split)}`);
            report.badSteps.push({ value: String(bad), ...got });
        }

        // 4. previews: a graph of pack nodes that need no model, queued through /prompt, shows images on the nodes.
        const ids = await page.evaluate((image) => {
            const app = window.app;
            const LG = window.LiteGraph;
            app.clean?.(); // forget the previous workflows' node outputs (node ids are reused)
            app.graph.clear();
            const add = (type, pos, widgets = {}) => {
                const node = LG.createNode(type);
                node.pos = pos;
                app.graph.add(node);
                for (const [name, value] of Object.entries(widgets)) {
                    node.widgets.find((w) => w.name === name).value = value;
                }
                return node;
            };
            const load = add("LoadImage", [20, 40], { image });
            const mask = add("VCUTSalientMask", [380, 40], { refine: false });
            const mve = add("VCUTMotionVectorEncode", [760, 40], { block_size: "8", search_range: 4 });
            const out1 = add("PreviewImage", [1140, 40]);
            const out2 = add("PreviewImage", [1140, 420]);
            load.connect(0, mask, 0);
            load.connect(0, mve, 0);
            mask.connect(1, out1, 0);
            mve.connect(2, out2, 0);
            mask.size = [340, 360];
            mve.size = [340, 360];
            app.canvas.ds.scale = 1;
            app.canvas.ds.offset = [60, 100]; // below the tab bar, side by side: no overlap
            return { mask: mask.id, mve: mve.id };
        }, args.image);
        const queued = await page.evaluate(async () => {
            const { api } = await import("/scripts/api.js"); // the page's websocket client: its id gets the results
            const { output } = await window.app.graphToPrompt();
            const res = await fetch("/prompt", { method: "POST", headers: { "Content-Type": "application/json" },
                body: JSON.stringify({ prompt: output, client_id: api.clientId }) });
            return { status: res.status, body: await res.json() };
        });
        check(queued.status === 200 && queued.body.prompt_id, `POST /prompt: ${JSON.stringify(queued)}`);
        await page.waitForFunction((ids) => {
            const outs = window.app.nodeOutputs || {};
            // this run's previews are temp images (a stale output of a reused node id would not be)
            return [ids.mask, ids.mve].every((id) => outs[String(id)]?.images?.length
                && outs[String(id)].images.every((im) => im.type === "temp"));
        }, ids, { timeout: 60000 });
        for (const [name, id, expected] of [["salient_mask", ids.mask, 3], ["motion_vector", ids.mve, 2]]) {
            const shown = await page.evaluate(async ([id, nodes2]) => {
                const app = window.app;
                const node = app.graph.getNodeById(id);
                const images = app.nodeOutputs[String(id)].images;
                // LiteGraph loads the images onto the node (node.imgs) when it draws it; a Vue node shows <img>s
                const shownImages = () => (nodes2 ? [...document.querySelectorAll(`[data-node-id="${id}"] img`)]
                                                  : node.imgs || []);
                const ready = () => shownImages().length && shownImages().every((im) => im.complete && im.naturalWidth);
                for (let i = 0; i < 100 && !ready(); i++) {
                    app.canvas.setDirty(true, true);
                    await new Promise((r) => setTimeout(r, 100));
                }
                return { outputs: images.length, imgs: shownImages().length,
                         loaded: shownImages().filter((im) => im.complete && im.naturalWidth > 0).length,
                         types: [...new Set(images.map((im) => im.type))], files: images.map((im) => im.filename),
                         pos: [...node.pos], size: [...node.size] };
            }, [id, nodes2]);
            check(shown.outputs === expected,
                  `${name}: ${shown.outputs} preview images, expected ${expected}: ${JSON.stringify(shown)}`);
            check(shown.imgs > 0 && shown.loaded === shown.imgs,
                  `${name}: images not shown on the node ${JSON.stringify(shown)}`);
            check(shown.types.length === 1 && shown.types[0] === "temp", `${name}: preview type ${shown.types}`);
            report.previews[name] = shown;
        }
        await page.evaluate(() => { window.app.canvas.setDirty(true, true); });
        await page.waitForTimeout(400);
        for (const [name, id] of [["salient_mask", ids.mask], ["motion_vector", ids.mve]]) {
            const clip = await nodeClip(id, nodes2);
            await page.screenshot({ path: path.join(args.out, `${name}_preview.png`), clip });
            report.screenshots.push(`${name}_preview.png`);
        }
        console.log("VCUT_WEB_REPORT " + JSON.stringify(report));
    } finally {
        await context.close();
        fs.rmSync(userDataDir, { recursive: true, force: true });
    }
}

main().catch((e) => {
    console.error(e.stack || String(e));
    process.exit(1);
});
