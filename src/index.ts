export { createDevice, Device } from './graph/device.js';
export type { TensorOptions, DeviceOptions } from './graph/device.js';
export type { CreateDeviceOptions, AdapterMode } from './runtime/device.js';
export { NoAdapterError, ADAPTER_MODES } from './runtime/device.js';
export { TUNED_PROBLEMS } from './graph/tune.js';
export type { TuneSetting } from './graph/tune.js';
export { autotune, tunedChoice, setChoice, tuningOf, adapterKey, memoryStore, localStorageStore } from './runtime/autotune.js';
export type { TuneOptions, TuneProblem, TuneRecord, TuneStore, TuneCache, TuneWorkload, TuneBench } from './runtime/autotune.js';
export { Tensor, noGrad, grad } from './graph/tensor.js';
export type { GradOptions } from './graph/tensor.js';
export { CompiledStep } from './graph/compile.js';
export type { InputSpec, InputValue, StepOutputs } from './graph/compile.js';
export type { StepStats, ExecutorOptions } from './graph/executor.js';
export { Runtime, DeviceArray } from './runtime/runtime.js';
export type { DType, AdapterChoice } from './runtime/runtime.js';
export { ShapeError, LimitError, KernelCompileError } from './runtime/errors.js';
export * as ops from './graph/ops/index.js';

// Everything below is browser-safe too (no node:* imports); Node-only helpers (checkpoint files, the
// letters sheet on disk, image folders, the CLI) are in 'webgpu-diffusion/node' (src/node.ts).

// Layers, models, optimisers
export { Init, Module, ModuleList } from './nn/module.js';
export { ParameterSet } from './nn/params.js';
export { Linear, Conv2d, GroupNorm, LayerNorm, Embedding, Dropout } from './nn/layers.js';
export { Attention, ResBlock, Downsample, Upsample, Timesteps, TimestepEmbedding, SpatialSelfAttention, SpatialTransformer } from './nn/blocks.js';
export { Adam, AdamW } from './optim/adam.js';
export type { AdamOptions } from './optim/adam.js';
export { EMA } from './optim/ema.js';
export type { Trainer, TrainerProgress } from './optim/trainer.js';
export { UNet, UNET_DEFAULTS, resolveUNetConfig, unetConfigFromCheckpoint } from './models/unet.js';
export type { UNetConfig } from './models/unet.js';
export { VQGAN, resolveVQGANConfig } from './models/vqgan.js';
export type { VQGANConfig } from './models/vqgan.js';
export { VQGANTrainer } from './models/vqgan-trainer.js';
export type { VQGANTrainerOptions, VQGANStats, VQGANData } from './models/vqgan-trainer.js';
export { Classifier, ClassifierTrainer, classify } from './models/classifier.js';
export type { ClassifierConfig, ClassifierTrainOptions, ClassifierData } from './models/classifier.js';

// Diffusion
export { makeProcess, betaSchedule, PROCESS_KINDS, NoiseProcess, ConfigError } from './diffusion/process.js';
export type { ProcessConfig, ProcessKind, Level } from './diffusion/process.js';
export { makeSampler, samplersFor, SAMPLER_NAMES, SamplerError } from './diffusion/samplers/index.js';
export type { Sampler, SamplerOptions } from './diffusion/samplers/index.js';
export { SamplingLoop, sample } from './diffusion/sample.js';
export type { SampleRunOptions, SampleResult } from './diffusion/sample.js';
export { NetworkDenoiser, parseGuidanceInterval, guidanceRecord } from './diffusion/denoiser.js';
export type { Denoiser, GuidanceVariants } from './diffusion/denoiser.js';
export { generate, parseLabel, readSnapshots, conditionedDenoiser } from './diffusion/generate.js';
export type { GenerateOptions, ConditioningOptions } from './diffusion/generate.js';
export { DDIMInverseSampler, ddimInversion, invertDDIM, ddimGridOptions, checkInvertible } from './diffusion/invert.js';
export type { InvertOptions, InversionResult, DDIMGridOptions } from './diffusion/invert.js';
export { DiffusionTrainer, modelFromCheckpoint, samplerDefaults } from './diffusion/train.js';
export type { ImageDataset, TrainOptions, DiffusionCheckpointConfig, DiffusionProgress } from './diffusion/train.js';

// Pipelines: model presets; latent diffusion end to end (dataset to latents, samples to images, a
// model loaded with its VQ-GAN from bytes)
export { MODEL_PRESETS, isModelPreset, presetConfig } from './pipelines/presets.js';
export {
  latentScale, scaledLatentDataset, encodeLatentDataset, latentDecoder, firstStage, loadDiffusionModel, sampleImages,
  FirstStageMismatchError, MissingVQGANError,
} from './pipelines/latent.js';
export type { LatentDataset, LatentDecoder, FirstStage, DiffusionModel, Shape4 } from './pipelines/latent.js';
export { invertImages, reconstructImages, modelImageShape } from './pipelines/invert.js';
export { encodeDataset, decodeLatents, loadVQGAN } from './models/vqgan-latents.js';
export type { LatentInfo } from './diffusion/train.js';

// Checkpoints and safetensors (bytes in, bytes out)
export { encodeCheckpoint, decodeCheckpoint, loadCheckpoint, checkpointTensors } from './io/checkpoint.js';
export type { CheckpointData, TrainingState, EMAState, OptimizerState } from './io/checkpoint.js';
export { parseSafetensors, serializeSafetensors, SafetensorsError } from './io/safetensors.js';
export type { SafeTensor, SafeDType } from './io/safetensors.js';

// diffusers model folders from bytes, Blobs or byte sources (Node's loadDiffusers opens a folder)
export { loadDiffusersFiles, buildDiffusersModel, DiffusersModel } from './pipelines/diffusers/model.js';
export type { DiffusersFiles, DiffusersUNetInputs, WeightInput } from './pipelines/diffusers/model.js';
export { unet2DConfig, unet2DConditionConfig, vqModelConfig, exportUNetConfig, exportVQConfig, DiffusersConfigError, DIFFUSERS_CLASSES } from './pipelines/diffusers/config.js';
export type { DiffusersClassName } from './pipelines/diffusers/config.js';
export type { LoadProgress, LoadReport } from './pipelines/diffusers/weights.js';
export { readSchedulerConfig, exportSchedulerConfig, parsePythonJson, SCHEDULER_CLASSES } from './pipelines/diffusers/scheduler.js';
export type { SchedulerSetup, SchedulerClassName } from './pipelines/diffusers/scheduler.js';
export { exportDiffusers, LABEL_CONTEXT_FILE } from './pipelines/diffusers/export.js';
export type { DiffusersFolder, ExportOptions } from './pipelines/diffusers/export.js';
export { bytesSource, blobSource, readSafetensorsHeader, streamSafetensors } from './io/safetensors-stream.js';
export type { ByteSource } from './io/safetensors-stream.js';

// Data and images
export { makeLetters, lettersFonts } from './data/letters.js';
export type { LettersMeta, LettersOptions, LettersData } from './data/letters.js';
export { makeColorsDataset } from './data/colors.js';
export type { ColorsDataset } from './data/colors.js';
export { encodePng, decodePng, gridPng, imagesToGrid, resampleArea } from './data/png.js';
export type { Image8, GridOptions } from './data/png.js';
export { linePlotPng } from './data/plot.js';
export type { PlotOptions } from './data/plot.js';
export { mulberry32, mixSeed } from './data/rng.js';

// Metrics
export { COLOR_CLASSES, srgbToLab, deltaE76, dominantColorClass } from './data/color-space.js';
export { evalColors } from './metrics/color.js';
export { frechetDistance } from './metrics/frechet.js';
export { nearestNeighbours } from './metrics/retrieval.js';
