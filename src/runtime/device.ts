import { Runtime } from './runtime.js';

export interface CreateDeviceOptions {
  /** Use this GPUDevice instead of requesting one. */
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
  /** Limits to request above the defaults (e.g. maxStorageBufferBindingSize). */
  requiredLimits?: Record<string, number>;
  /** Where the one-line notice about a software fallback goes (default: console.warn). */
  log?: (line: string) => void;
}

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

const INSTALL_HINT =
  'No WebGPU adapter found. In Node, install the optional dependency `webgpu` (npm install webgpu); ' +
  'without a GPU, install a Vulkan loader and SwiftShader from Debian: `apt-get install libvulkan1 chromium` ' +
  '(webgpu-diffusion then uses /usr/lib/chromium/vk_swiftshader_icd.json). In a browser, use one with WebGPU enabled.';

interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

async function nodeAdapter(opts: CreateDeviceOptions, log: (s: string) => void): Promise<{ adapter: GPUAdapter; keepAlive: unknown }> {
  let dawn: DawnModule;
  try {
    const name = 'webgpu'; // kept out of bundlers' static graph: browsers never load it
    dawn = (await import(/* @vite-ignore */ name)) as DawnModule;
  } catch (e) {
    throw new Error(`${INSTALL_HINT} (import of 'webgpu' failed: ${(e as Error).message})`);
  }
  Object.assign(globalThis, dawn.globals);
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
  // Also hidden from bundlers: a browser bundle of the package must not have to resolve node:fs.
  const [fsName, osName] = ['node:fs', 'node:os'];
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs');
  const os = (await import(/* @vite-ignore */ osName)) as typeof import('node:os');
  const tryCreate = async () => {
    // Dawn otherwise zero-fills workgroup memory with an OpConstantNull initializer, which SwiftShader
    // compiles into one store per element: ~3 s per pipeline with a 16 KiB tile (10 ms without).
    const gpu = dawn.create(['disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension']);
    const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference });
    return { gpu, adapter };
  };
  // SwiftShader's Vulkan library (built with Wayland support) complains on every start when there is no
  // runtime directory; a private empty one keeps it quiet.
  if (!env.XDG_RUNTIME_DIR && process.platform === 'linux') {
    const dir = `${os.tmpdir()}/webgpu-diffusion-runtime-${process.getuid?.() ?? 0}`;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    env.XDG_RUNTIME_DIR = dir;
  }
  // On Linux without GPU device nodes there is no hardware adapter to find: go straight to SwiftShader
  // (probing first makes Dawn load and refuse Mesa's lavapipe, with a warning).
  const noGpuNodes = process.platform === 'linux' && !['/dev/dri', '/dev/nvidiactl', '/dev/kfd'].some((p) => fs.existsSync(p));
  const swiftshader = !env.VK_ICD_FILENAMES && fs.existsSync(SWIFTSHADER_ICD);
  let gpu: GPU | undefined;
  let adapter: GPUAdapter | null = null;
  if (!(noGpuNodes && swiftshader)) ({ gpu, adapter } = await tryCreate());
  if (!adapter && swiftshader) {
    // The Vulkan loader reads VK_ICD_FILENAMES when Dawn creates its instance, so setting it now works.
    env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    ({ gpu, adapter } = await tryCreate());
    if (adapter) log(`webgpu-diffusion: no hardware GPU adapter; using SwiftShader from the system Chromium (${SWIFTSHADER_ICD}), CPU-emulated and slow`);
  }
  if (!adapter) throw new Error(INSTALL_HINT);
  return { adapter, keepAlive: gpu };
}

/** Create the runtime: the browser's navigator.gpu, Dawn in Node, or a GPUDevice you pass. */
export async function createRuntime(opts: CreateDeviceOptions = {}): Promise<Runtime> {
  const log = opts.log ?? ((s: string) => console.warn(s));
  if (opts.device) {
    return new Runtime(opts.device, describe((opts.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo));
  }
  let adapter: GPUAdapter | null;
  let keepAlive: unknown = null;
  const navGpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (navGpu) {
    adapter = await navGpu.requestAdapter({ powerPreference: opts.powerPreference });
    if (!adapter) throw new Error(INSTALL_HINT);
  } else if ((globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node) {
    ({ adapter, keepAlive } = await nodeAdapter(opts, log));
  } else {
    throw new Error(INSTALL_HINT);
  }
  const limits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  // Ask for what the adapter offers for the limits that bound tensor sizes.
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX']) {
    if (lim[k] !== undefined) limits[k] = lim[k]!;
  }
  Object.assign(limits, opts.requiredLimits ?? {});
  const features = (['timestamp-query', 'subgroups'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits: limits, requiredFeatures: features });
  return new Runtime(device, describe(adapter.info), keepAlive);
}

function describe(info?: GPUAdapterInfo) {
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
  };
}
