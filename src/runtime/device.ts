import { Runtime, AdapterChoice } from './runtime.js';

/** Which adapter to use: a GPU, the software fallback (SwiftShader in Dawn and Chrome), or a GPU if there is one. */
export type AdapterMode = 'auto' | 'gpu' | 'swiftshader';
export const ADAPTER_MODES: readonly AdapterMode[] = ['auto', 'gpu', 'swiftshader'];

export interface CreateDeviceOptions {
  /** Use this GPUDevice instead of requesting one. */
  device?: GPUDevice;
  /** 'auto' (default): the adapter WebGPU offers first, a GPU when there is one; 'gpu': refuse a software adapter; 'swiftshader': only the software fallback adapter. */
  adapter?: AdapterMode;
  powerPreference?: GPUPowerPreference;
  /** Limits to request above the defaults (e.g. maxStorageBufferBindingSize). */
  requiredLimits?: Record<string, number>;
  /** Where the one-line notice about a software adapter goes (default: console.warn). */
  log?: (line: string) => void;
}

/** No adapter of the kind asked for; `mode` says which was asked, so that a launcher can offer the fallback. */
export class NoAdapterError extends Error {
  constructor(
    readonly mode: AdapterMode,
    message: string,
  ) {
    super(message);
    this.name = 'NoAdapterError';
  }
}

// The Vulkan loader reads VK_ICD_FILENAMES once, when Dawn creates its instance: it belongs to the
// environment the process starts with. The library never sets it (that would change the whole
// process); launchers do, for the processes they start (see src/cli/webgpu-env.ts).
const SOFTWARE_HINT =
  'Without a GPU, start Node with VK_ICD_FILENAMES pointing at a SwiftShader ICD manifest ' +
  "(Debian's chromium package ships /usr/lib/chromium/vk_swiftshader_icd.json, with libvulkan1 as the loader); " +
  '`wgd --adapter swiftshader` and the npm scripts of this project do that for you.';

interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

const isFallback = (a: GPUAdapter) =>
  Boolean((a.info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? (a as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter);

/** Ask `gpu` for an adapter of the kind `mode` names; throws NoAdapterError naming what was missing. */
async function pickAdapter(gpu: GPU, opts: CreateDeviceOptions, where: string): Promise<{ adapter: GPUAdapter; choice: AdapterChoice }> {
  const mode = opts.adapter ?? 'auto';
  if (!ADAPTER_MODES.includes(mode)) throw new Error(`createDevice: adapter '${mode}' is not one of ${ADAPTER_MODES.join(', ')}`);
  if (mode === 'swiftshader') {
    const adapter = await gpu.requestAdapter({ forceFallbackAdapter: true, powerPreference: opts.powerPreference });
    if (!adapter) throw new NoAdapterError(mode, `No software fallback adapter (SwiftShader) is available to ${where}. ${where === 'Node' ? SOFTWARE_HINT : 'In Chrome, start it with --enable-unsafe-webgpu --use-webgpu-adapter=swiftshader.'}`);
    return { adapter, choice: { mode, software: true, reason: 'the software fallback adapter was asked for' } };
  }
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference });
  if (!adapter) {
    const hint = where === 'Node' ? SOFTWARE_HINT : 'Use a browser with WebGPU enabled (e.g. a recent Chrome or Edge).';
    throw new NoAdapterError(mode, `No WebGPU adapter is available to ${where}${where === 'Node' ? " (Dawn, from the 'webgpu' package, found none)" : ''}. ${hint}`);
  }
  const software = isFallback(adapter);
  if (mode === 'gpu' && software) {
    throw new NoAdapterError(mode, `--adapter gpu: the only adapter available to ${where} is a software one (${describe(adapter.info).description || describe(adapter.info).device}); no GPU was found.`);
  }
  const reason = software ? 'no GPU adapter was offered, only the software fallback' : mode === 'gpu' ? 'a GPU was asked for and found' : 'a GPU adapter was offered first';
  return { adapter, choice: { mode, software, reason } };
}

async function nodeGpu(): Promise<{ gpu: GPU; keepAlive: unknown }> {
  let dawn: DawnModule;
  try {
    const name = 'webgpu'; // kept out of bundlers' static graph: browsers never load it
    dawn = (await import(/* @vite-ignore */ name)) as DawnModule;
  } catch (e) {
    throw new Error(`WebGPU in Node needs the optional dependency 'webgpu' (npm install webgpu): its import failed: ${(e as Error).message}`);
  }
  Object.assign(globalThis, dawn.globals);
  // Dawn otherwise zero-fills workgroup memory with an OpConstantNull initializer, which SwiftShader
  // compiles into one store per element: ~3 s per pipeline with a 16 KiB tile (10 ms without). Every
  // kernel writes its workgroup memory before reading it, so the fill is not needed on any adapter.
  const gpu = dawn.create(['disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension']);
  // The object `create` returns must stay reachable while the device lives (the Runtime keeps it).
  return { gpu, keepAlive: gpu };
}

/** Create the runtime: the browser's navigator.gpu, Dawn in Node, or a GPUDevice you pass. */
export async function createRuntime(opts: CreateDeviceOptions = {}): Promise<Runtime> {
  const log = opts.log ?? ((s: string) => console.warn(s));
  if (opts.device) {
    const info = describe((opts.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo);
    return new Runtime(opts.device, info, null, { mode: 'auto', software: false, reason: 'a GPUDevice was passed in' });
  }
  const navGpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  const isNode = Boolean((globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node);
  let gpu: GPU;
  let keepAlive: unknown = null;
  if (navGpu) gpu = navGpu;
  else if (isNode) ({ gpu, keepAlive } = await nodeGpu());
  else throw new NoAdapterError(opts.adapter ?? 'auto', 'This browser has no WebGPU (navigator.gpu is missing); use one with WebGPU enabled.');
  const { adapter, choice } = await pickAdapter(gpu, opts, navGpu ? 'this browser' : 'Node');
  if (choice.software && choice.mode === 'auto') log('webgpu-diffusion: no GPU adapter; using the software fallback (SwiftShader), CPU-emulated and slow');
  const limits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  // Ask for what the adapter offers for the limits that bound tensor sizes.
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX']) {
    if (lim[k] !== undefined) limits[k] = lim[k]!;
  }
  Object.assign(limits, opts.requiredLimits ?? {});
  const features: GPUFeatureName[] = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
  const device = await adapter.requestDevice({ requiredLimits: limits, requiredFeatures: features });
  return new Runtime(device, describe(adapter.info), keepAlive, choice);
}

function describe(info?: GPUAdapterInfo) {
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
  };
}
