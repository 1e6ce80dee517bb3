// Model size presets: plain U-Net configs (a user can also spell one out in full), shared by the CLI's
// --model, the lab's training panel and library users.
import type { UNetConfig } from '../models/unet.js';
import { ConfigError } from '../diffusion/process.js';

export const MODEL_PRESETS: Record<string, Partial<UNetConfig>> = {
  /** For tests and smoke runs: two levels of 16 and 32 channels. */
  tiny: { blockOutChannels: [16, 32], layersPerBlock: 1, attentionHeads: 2, normGroups: 8 },
  /** The demo's size: 32 and 64 channels, attention at the lower level. */
  small: { blockOutChannels: [32, 64], layersPerBlock: 1, attentionHeads: 4, normGroups: 8 },
  /** Three levels, 64-128-128 channels. */
  base: { blockOutChannels: [64, 128, 128], layersPerBlock: 2, attentionHeads: 4, normGroups: 32 },
};

/** Whether `name` is one of MODEL_PRESETS (its own keys only: 'toString' is no preset). */
export function isModelPreset(name: string): boolean {
  return Object.hasOwn(MODEL_PRESETS, name);
}

/** A UNet config for images of `size` x `size` with `channels` channels, from a preset name. */
export function presetConfig(name: string, size: number, channels: number, conditioning: UNetConfig['conditioning'], numClasses: number): Partial<UNetConfig> {
  if (!isModelPreset(name)) throw new ConfigError('presetConfig', `model preset '${name}' is unknown; allowed values: ${Object.keys(MODEL_PRESETS).join(', ')}`);
  const p = MODEL_PRESETS[name]!;
  const levels = p.blockOutChannels!.length;
  // Attention at the lowest resolution (and the middle block, always).
  const lowest = size / 2 ** (levels - 1);
  return { ...p, sampleSize: size, inChannels: channels, outChannels: channels, attentionResolutions: [lowest], conditioning, numClasses: conditioning === 'none' ? 0 : numClasses };
}
