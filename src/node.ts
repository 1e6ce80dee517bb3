// 'webgpu-diffusion/node': the Node-only helpers, beside everything the browser-safe entry exports:
// checkpoint files (written to a temporary file and renamed), the shipped letters sprite sheet read
// from disk, folders of PNG images, latent diffusion with files (a latent model's VQ-GAN found beside
// it, a dataset's latents cached in a run folder), the built-in datasets by name, and the `wgd` command line.
export * from './index.js';
export { writeFileAtomic, readSafetensorsFile } from './io/file.js';
export { autotuneFileStore, defaultAutotunePath } from './io/autotune-file.js';
export { saveCheckpointFile, readCheckpointFile } from './io/checkpoint-file.js';
export { fileSource } from './io/file-source.js';
export type { FileSource } from './io/file-source.js';
export { loadDiffusers, diffusersFolderFiles } from './pipelines/diffusers/node.js';
export { loadLettersGlyphs, lettersDir } from './data/letters-node.js';
export { loadImageFolder } from './data/folder.js';
export type { FolderOptions, FolderData } from './data/folder.js';
export { resolveVQGANPath, latentDataset, firstStageFor, decoderFor, loadDiffusionModelFile, VQGANNotFoundError } from './pipelines/latent-node.js';
export { loadDataset, BUILTIN_DATASETS } from './cli/datasets.js';
export type { DatasetSpec } from './cli/datasets.js';
export { main as cli } from './cli/main.js';
