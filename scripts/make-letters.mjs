// Regenerates the built-in `letters` dataset: data/letters/glyphs.png (a greyscale sprite sheet,
// 255 = ink) and data/letters/glyphs.json (its layout). Users never need to run this: the two files
// ship with the repository. It needs Debian font packages (installed here with apt-get when run as
// root) and the system Chromium, driven headless by puppeteer-core, whose canvas rasterises glyphs.
//
//   node scripts/make-letters.mjs
//
// Each glyph is drawn from the font file itself (FontFace from bytes, never a system lookup, so a
// missing font cannot silently fall back), sized so that the font's cap height is CAP px (shrunk if
// the glyph would not fit FIT px), then shifted so that its ink bounding box is centred in the cell.
// Stroke weight is varied uniformly for every font by eroding (w < 0) or growing (w > 0) the outline
// with a canvas stroke of width 2|w| px.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encode } from 'fast-png';
import puppeteer from 'puppeteer-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'data/letters');
const CELL = 64;
const CAP = 40; // cap height in px
const FIT = 52; // largest ink extent before the stroke grows it (2*1.5 px) -> at most 55 of 64
const WEIGHTS = [-0.75, 0, 1.5]; // outline offset in px: thin, regular, heavy
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const T = '/usr/share/fonts/truetype';
const O = '/usr/share/fonts/opentype';
// Visually distinct families: sans, serif, mono, italic, rounded, condensed, script, hand-drawn.
const FONTS = [
  { name: 'DejaVu Sans', style: 'humanist sans', pkg: 'fonts-dejavu-core', file: `${T}/dejavu/DejaVuSans.ttf` },
  { name: 'DejaVu Serif', style: 'slab-ish serif', pkg: 'fonts-dejavu-core', file: `${T}/dejavu/DejaVuSerif.ttf` },
  { name: 'Liberation Serif', style: 'Times-like serif', pkg: 'fonts-liberation', file: `${T}/liberation/LiberationSerif-Regular.ttf` },
  { name: 'Liberation Sans Italic', style: 'oblique grotesque sans', pkg: 'fonts-liberation', file: `${T}/liberation/LiberationSans-Italic.ttf` },
  { name: 'Liberation Mono', style: 'monospace sans', pkg: 'fonts-liberation', file: `${T}/liberation/LiberationMono-Regular.ttf` },
  { name: 'FreeSerif Italic', style: 'italic serif', pkg: 'fonts-freefont-ttf', file: `${T}/freefont/FreeSerifItalic.ttf` },
  { name: 'FreeMono Bold', style: 'typewriter slab mono', pkg: 'fonts-freefont-ttf', file: `${T}/freefont/FreeMonoBold.ttf` },
  { name: 'Comic Neue', style: 'casual hand', pkg: 'fonts-comic-neue', file: `${O}/comic-neue/ComicNeue-Regular.otf` },
  { name: 'Bebas Neue', style: 'condensed display caps', pkg: 'fonts-bebas-neue', file: `${O}/bebas-neue/BebasNeue-Regular.otf` },
  { name: 'League Spartan Bold', style: 'geometric bold sans', pkg: 'fonts-league-spartan', file: `${O}/league-spartan/LeagueSpartan-Bold.otf` },
  { name: 'Lobster', style: 'script display', pkg: 'fonts-lobster', file: `${O}/lobster/lobster.otf` },
  // held out for evaluation: one of each broad kind that the training fonts also cover
  { name: 'EB Garamond', style: 'old-style serif', pkg: 'fonts-ebgaramond', file: `${O}/ebgaramond/EBGaramond12-Regular.otf` },
  { name: 'Comfortaa', style: 'rounded geometric sans', pkg: 'fonts-comfortaa', file: `${T}/comfortaa/Comfortaa-Regular.ttf` },
  { name: 'Humor Sans', style: 'hand-drawn', pkg: 'fonts-humor-sans', file: `${T}/humor-sans/Humor-Sans.ttf` },
];
const HELDOUT = ['EB Garamond', 'Comfortaa', 'Humor Sans'];

// 1. fonts
const missing = [...new Set(FONTS.filter((f) => !existsSync(f.file)).map((f) => f.pkg))];
if (missing.length) {
  if (process.getuid?.() !== 0) {
    console.error(`[letters] missing font packages; install them with: sudo apt-get install ${missing.join(' ')}`);
    process.exit(1);
  }
  console.log(`[letters] apt-get install ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update'], { stdio: 'inherit', env });
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  const still = FONTS.filter((f) => !existsSync(f.file));
  if (r.status !== 0 || still.length) {
    console.error(`[letters] still missing: ${still.map((f) => f.file).join(', ') || '(apt-get failed)'}`);
    process.exit(1);
  }
}

// 2. render in headless Chromium
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
const profile = mkdtempSync(join(tmpdir(), 'letters-chromium-'));
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`],
});
let sheet;
try {
  const page = await browser.newPage();
  await page.setContent('<!doctype html><canvas id="c"></canvas>');
  const fonts = FONTS.map((f) => readFileSync(f.file).toString('base64'));
  const rows = await page.evaluate(renderAll, { fonts, letters: LETTERS, weights: WEIGHTS, cell: CELL, cap: CAP, fit: FIT });
  const width = LETTERS.length * CELL;
  const height = FONTS.length * WEIGHTS.length * CELL;
  sheet = new Uint8Array(width * height);
  rows.forEach((cells, r) => cells.forEach((cell, l) => {
    for (let y = 0; y < CELL; y++) sheet.set(cell.slice(y * CELL, (y + 1) * CELL), (r * CELL + y) * width + l * CELL);
  }));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'glyphs.png'), encode({ width, height, data: sheet, depth: 8, channels: 1 }, { zlib: { level: 9 } }));
  const meta = {
    description: 'Uppercase A-Z rendered by Chromium canvas from Debian fonts; greyscale, 255 = ink. Regenerate with node scripts/make-letters.mjs.',
    letters: LETTERS,
    cell: CELL,
    capHeight: CAP,
    weights: WEIGHTS,
    layout: 'row (in cells) = font * weights.length + weight, column = letter',
    fonts: FONTS.map((f) => ({ name: f.name, style: f.style, package: f.pkg, file: basename(f.file) })),
    heldout: HELDOUT,
    renderer: await browser.version(),
  };
  writeFileSync(join(outDir, 'glyphs.json'), JSON.stringify(meta, null, 2) + '\n');
  console.log(`[letters] wrote ${width}x${height} sheet: ${FONTS.length} fonts x ${WEIGHTS.length} weights x ${LETTERS.length} letters`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}

// Runs in the page. Returns rows[font*weights + weight][letter] = cell*cell greyscale (alpha) bytes.
async function renderAll({ fonts, letters, weights, cell, cap, fit }) {
  const big = 3 * cell; // scratch canvas wide enough for any glyph before it is centred
  const canvas = document.getElementById('c');
  canvas.width = canvas.height = big;
  const scratch = canvas.getContext('2d', { willReadFrequently: true });
  const rows = [];
  for (let f = 0; f < fonts.length; f++) {
    const bytes = Uint8Array.from(atob(fonts[f]), (ch) => ch.charCodeAt(0));
    const face = new FontFace(`F${f}`, bytes.buffer);
    await face.load().catch((e) => { throw new Error(`font ${f}: ${e.message}`); });
    document.fonts.add(face);
    scratch.font = `100px F${f}`;
    const hm = scratch.measureText('H');
    const size0 = (100 * cap) / (hm.actualBoundingBoxAscent + hm.actualBoundingBoxDescent);
    for (const w of weights) {
      const row = [];
      for (const letter of letters) {
        scratch.font = `100px F${f}`;
        const m = scratch.measureText(letter);
        const ext = Math.max(m.actualBoundingBoxLeft + m.actualBoundingBoxRight, m.actualBoundingBoxAscent + m.actualBoundingBoxDescent);
        const size = Math.min(size0, (100 * fit) / ext);
        scratch.clearRect(0, 0, big, big);
        scratch.font = `${size}px F${f}`;
        scratch.fillStyle = scratch.strokeStyle = '#fff';
        scratch.lineJoin = 'round';
        scratch.lineWidth = 2 * Math.abs(w);
        scratch.globalCompositeOperation = 'source-over';
        scratch.fillText(letter, cell, 2 * cell);
        if (w > 0) scratch.strokeText(letter, cell, 2 * cell);
        if (w < 0) {
          scratch.globalCompositeOperation = 'destination-out';
          scratch.strokeText(letter, cell, 2 * cell);
        }
        // centre the ink bounding box (measured on pixels, so it is exact) in the cell
        const px = scratch.getImageData(0, 0, big, big).data;
        let x0 = big, x1 = -1, y0 = big, y1 = -1;
        for (let y = 0; y < big; y++) for (let x = 0; x < big; x++) {
          if (px[(y * big + x) * 4 + 3] > 0) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
        }
        if (x1 < 0 || x1 - x0 >= cell || y1 - y0 >= cell) throw new Error(`font ${f} letter ${letter}: ink box ${x0},${y0}..${x1},${y1} empty or larger than the cell`);
        const ox = Math.round((x0 + x1 + 1) / 2 - cell / 2);
        const oy = Math.round((y0 + y1 + 1) / 2 - cell / 2);
        const out = new Array(cell * cell);
        for (let y = 0; y < cell; y++) for (let x = 0; x < cell; x++) out[y * cell + x] = px[((y + oy) * big + x + ox) * 4 + 3];
        row.push(out);
      }
      rows.push(row);
    }
  }
  return rows;
}
