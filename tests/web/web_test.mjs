// Browser checks of the vcut web extension against a running ComfyUI server (started by
// tests/integration/test_web.py). Debian's chromium driven by playwright-core; no network beyond loopback.
//
//   node tests/web/web_test.mjs --url http://127.0.0.1:PORT --workflows workflows --out DIR \
//        --image vcut_frames.png --fractions '[[0.64,25,17],...]'
//
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
    return args;
}

function check(condition, message) {
    if (!condition) throw new Error(`check failed: ${message}`);
}

const rgbDistance = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));
const hexToRgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

async function main() {
    const args = parseArgs(process.argv.slice(2));
    fs.mkdirSync(args.out, { recursive: true });
    const report = { workflows: {}, stepBar: [], previews: {}, screenshots: [], consoleErrors: [], failedRequests: [] };
    const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "vcut-chromium-"));
    const context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1600, height: 900 },
    });
    try {
        const page = context.pages()[0] || await context.newPage();
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

        // The extension's own module (same URL, so the same instance the app loaded).
        const extUrl = await page.evaluate(async () => (await (await fetch("/extensions")).json())
            .find((u) => u.endsWith("/js/vcut.js")));
        check(extUrl, "ComfyUI serves web/js/vcut.js under /extensions (WEB_DIRECTORY)");
        report.extension = extUrl;
        const colours = await page.evaluate(async (u) => {
            const m = await import(u);
            return { color: m.VCUT_COLOR, bgcolor: m.VCUT_BGCOLOR, guided: m.GUIDED_COLOR, unguided: m.UNGUIDED_COLOR };
        }, extUrl);

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
                return {
                    count: nodes.length,
                    missing: [...new Set([...graph.nodes.map((n) => n.type), ...nodes.map((n) => n.type)])]
                        .filter((t) => !registered[t]),
                    pack: nodes.filter((n) => n.type.startsWith("VCUT"))
                        .map((n) => ({ type: n.type, color: n.color, bgcolor: n.bgcolor })),
                };
            }, json);
            await page.evaluate(() => document.querySelectorAll(".p-dialog-mask").forEach((d) => d.remove()));
            check(result.missing.length === 0, `${file}: missing node types ${result.missing}`);
            check(result.count === json.nodes.length, `${file}: ${result.count} nodes loaded of ${json.nodes.length}`);
            for (const n of result.pack) {
                check(n.color === colours.color && n.bgcolor === colours.bgcolor,
                      `${file}: ${n.type} colour ${n.color}/${n.bgcolor}, `
                      + `expected ${colours.color}/${colours.bgcolor}`);
            }
            report.workflows[file] = { nodes: result.count, packNodes: result.pack.length };
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
        for (const c of cases) {
            const got = await page.evaluate(async ([set, colours]) => {
                const app = window.app;
                const sched = app.graph._nodes.find((n) => n.type === "VCUTCutStepScheduler");
                const sampler = app.graph._nodes.find((n) => n.type === "KSampler");
                for (const [name, value] of Object.entries(set)) {
                    const target = name === "steps" ? sampler : sched;
                    const w = target.widgets.find((x) => x.name === name);
                    w.value = value;
                    w.callback?.(value);
                }
                // centre the node at scale 1 and redraw
                app.canvas.ds.scale = 1.25; // clear of the floating tab bar at the top left
                app.canvas.ds.offset = [-sched.pos[0] + 400, -sched.pos[1] + 260];
                app.canvas.setDirty(true, true);
                app.canvas.draw(true, true);
                await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
                const split = sched.vcutStepSplit;
                const bar = sched.vcutStepBar;
                // pixel colour at the centre of each cell, read back from the canvas
                const canvas = app.canvas.canvas;
                const ctx = canvas.getContext("2d");
                const ratio = canvas.width / canvas.clientWidth;
                const cells = [];
                for (let i = 0; i < split.steps; i++) {
                    const gx = sched.pos[0] + bar.x + (i + 0.5) * bar.width / split.steps;
                    const gy = sched.pos[1] + bar.y + bar.height / 2;
                    const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([gx, gy]);
                    const px = ctx.getImageData(Math.round(cx * ratio), Math.round(cy * ratio), 1, 1).data;
                    cells.push([px[0], px[1], px[2]]);
                }
                const [x0, y0] = app.canvas.ds.convertOffsetToCanvas([sched.pos[0], sched.pos[1]]);
                const rect = canvas.getBoundingClientRect();
                return { split: { steps: split.steps, cut: split.cut, guided: split.guided, sampler: split.sampler,
                                  summary: split.summary },
                         cells, clip: { x: rect.left + x0 - 8, y: rect.top + y0 - 38 * 1.25,
                                        width: sched.size[0] * 1.25 + 16, height: (sched.size[1] + 46) * 1.25 } };
            }, [c.set, colours]);
            for (const key of Object.keys(c.expect)) {
                check(got.split[key] === c.expect[key],
                      `step bar after ${JSON.stringify(c.set)}: ${key}=${got.split[key]}, expected ${c.expect[key]}`);
            }
            check(got.split.sampler === "KSampler", `step count read from ${got.split.sampler}, expected KSampler`);
            check(got.split.summary.includes("auto") === Boolean(c.auto), `auto note in "${got.split.summary}"`);
            const guidedRgb = hexToRgb(colours.guided);
            const unguidedRgb = hexToRgb(colours.unguided);
            got.cells.forEach((rgb, i) => {
                const want = i < c.expect.guided ? guidedRgb : unguidedRgb;
                check(rgbDistance(rgb, want) <= 12,
                      `cell ${i + 1} drawn ${rgb}, expected ${want} (${JSON.stringify(c.set)})`);
            });
            report.stepBar.push({ set: c.set, ...got.split });
            if (c.shot) {
                await page.screenshot({ path: path.join(args.out, "cut_step_scheduler.png"), clip: got.clip });
                report.screenshots.push("cut_step_scheduler.png");
            }
        }

        // 3b. no sampler connected: the bar says so and draws the default.
        const lone = await page.evaluate(async () => {
            const app = window.app;
            app.graph.clear();
            const node = window.LiteGraph.createNode("VCUTCutStepScheduler");
            node.pos = [100, 100];
            app.graph.add(node);
            app.canvas.ds.offset = [0, 0];
            app.canvas.setDirty(true, true);
            app.canvas.draw(true, true);
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            return { ...node.vcutStepSplit };
        });
        check(lone.sampler === null && lone.steps === 25 && lone.guided === 16,
              `unconnected scheduler: ${JSON.stringify(lone)}`);
        report.unconnected = lone.summary;

        // 3c. through another MODEL node to a KSamplerAdvanced: its schedule is steps 5..25 of 30 = 20 steps.
        const advanced = await page.evaluate(async () => {
            const app = window.app;
            const sched = app.graph._nodes.find((n) => n.type === "VCUTCutStepScheduler");
            const guidance = window.LiteGraph.createNode("VideoLinearCFGGuidance");
            const sampler = window.LiteGraph.createNode("KSamplerAdvanced");
            guidance.pos = [450, 100];
            sampler.pos = [750, 100];
            app.graph.add(guidance);
            app.graph.add(sampler);
            const set = (name, value) => { sampler.widgets.find((w) => w.name === name).value = value; };
            set("steps", 30);
            set("start_at_step", 5);
            set("end_at_step", 25);
            sched.connect(0, guidance, 0);
            guidance.connect(0, sampler, 0);
            app.canvas.setDirty(true, true);
            app.canvas.draw(true, true);
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            return { ...sched.vcutStepSplit };
        });
        check(advanced.sampler === "KSamplerAdvanced" && advanced.steps === 20 && advanced.guided === 16,
              `scheduler -> VideoLinearCFGGuidance -> KSamplerAdvanced: ${JSON.stringify(advanced)}`);
        report.advanced = advanced.summary;

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
            const mve = add("VCUTMotionVectorEncode", [380, 420], { block_size: "8", search_range: 4 });
            const out1 = add("PreviewImage", [760, 40]);
            const out2 = add("PreviewImage", [760, 420]);
            load.connect(0, mask, 0);
            load.connect(0, mve, 0);
            mask.connect(1, out1, 0);
            mve.connect(2, out2, 0);
            mask.size = [340, 360];
            mve.size = [340, 360];
            app.canvas.ds.scale = 1;
            app.canvas.ds.offset = [20, 20];
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
            const shown = await page.evaluate(async (id) => {
                const app = window.app;
                const node = app.graph.getNodeById(id);
                const images = app.nodeOutputs[String(id)].images;
                // the frontend loads the images onto the node (node.imgs) when it draws it
                const ready = () => node.imgs?.length && node.imgs.every((im) => im.complete && im.naturalWidth);
                for (let i = 0; i < 100 && !ready(); i++) {
                    app.canvas.setDirty(true, true);
                    await new Promise((r) => setTimeout(r, 100));
                }
                return { outputs: images.length, imgs: node.imgs?.length ?? 0,
                         loaded: (node.imgs || []).filter((im) => im.complete && im.naturalWidth > 0).length,
                         types: [...new Set(images.map((im) => im.type))], files: images.map((im) => im.filename),
                         pos: node.pos, size: node.size };
            }, id);
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
            const clip = await page.evaluate((id) => {
                const app = window.app;
                const node = app.graph.getNodeById(id);
                const [x0, y0] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1]]);
                const rect = app.canvas.canvas.getBoundingClientRect();
                const s = app.canvas.ds.scale;
                return { x: rect.left + x0 - 6, y: rect.top + y0 - 36 * s, width: node.size[0] * s + 12,
                         height: node.size[1] * s + 42 * s };
            }, id);
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
