import { defineConfig } from 'vitest/config';
import { resolveWebgpuEnv } from './src/cli/webgpu-env.js';

// The test processes start in an environment where Dawn finds an adapter: the machine's own, or
// SwiftShader's when there is no GPU (the library never sets VK_ICD_FILENAMES itself).
const webgpu = resolveWebgpuEnv();

export default defineConfig({
  plugins: [
    {
      // WGSL files are imported as text, as esbuild's text loader does for the package build.
      name: 'wgsl-text',
      transform(code: string, id: string) {
        if (id.endsWith('.wgsl')) return { code: `export default ${JSON.stringify(code)};`, map: null };
        return undefined;
      },
    },
  ],
  test: {
    include: ['test/**/*.test.ts'],
    env: webgpu?.env ?? {},
    // SwiftShader already uses every core; one test file at a time keeps timings sane.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
