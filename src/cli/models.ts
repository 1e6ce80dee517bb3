// The model presets (src/pipelines/presets.ts) as the CLI's --model takes them: the same presets, the
// error in the flag's name.
import type { UNetConfig } from '../models/unet.js';
import { MODEL_PRESETS, isModelPreset, presetConfig as libraryPresetConfig } from '../pipelines/presets.js';

export { MODEL_PRESETS };

/** presetConfig for --model NAME. */
export function presetConfig(name: string, size: number, channels: number, conditioning: UNetConfig['conditioning'], numClasses: number): Partial<UNetConfig> {
  if (!isModelPreset(name)) throw new Error(`--model '${name}' is unknown; allowed values: ${Object.keys(MODEL_PRESETS).join(', ')}`);
  return libraryPresetConfig(name, size, channels, conditioning, numClasses);
}
