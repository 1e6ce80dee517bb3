/** Node-only: checkpoints on disk, written atomically. */
import { writeFileAtomic, readSafetensorsFile } from './file.js';
import { encodeCheckpoint, parseConfig, CheckpointData, TrainingState } from './checkpoint.js';

/** Write a checkpoint to `path` through a temporary file and a rename: a crash never leaves half a file. */
export async function saveCheckpointFile(path: string, s: TrainingState): Promise<void> {
  await writeFileAtomic(path, await encodeCheckpoint(s));
}

/** Read and validate a checkpoint file (header checked before the data is read). */
export async function readCheckpointFile(path: string): Promise<CheckpointData> {
  const { tensors, metadata } = await readSafetensorsFile(path);
  return { tensors, config: parseConfig(metadata, `checkpoint ${path}`) };
}
