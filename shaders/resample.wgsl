// Nearest 2x upsampling and 2x2 average pooling on NCHW, each the other's adjoint up to a scale:
//   upsample2x  = expand2x (scale 1),    its gradient = pool2x (scale 1)
//   downsample2x = pool2x (scale 1/4),   its gradient = expand2x (scale 1/4)
// One thread per coarse element. A coarse row p = (n*C + c)*Hc + h covers fine rows 2p and 2p+1
// (fine H = 2*Hc), and its element w covers fine columns 2w, 2w+1: one vec2 at index (2p + i)*Wc + w.

struct Params {
  n: u32,       // number of coarse elements N*C*Hc*Wc
  wc: u32,      // coarse width
  scale: f32,
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> coarse_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> fine_out: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> fine_in: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> coarse_out: array<f32>;

// fine[2h + i, 2w + j] = scale * coarse[h, w]
@compute @workgroup_size(256)
fn expand2x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let row = i / p.wc;
  let top = 2u * row * p.wc + (i - row * p.wc);
  let v = vec2<f32>(p.scale * coarse_in[i]);
  fine_out[top] = v;
  fine_out[top + p.wc] = v;
}

// coarse[h, w] = scale * sum of fine[2h + i, 2w + j] over the 2x2 block
@compute @workgroup_size(256)
fn pool2x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let row = i / p.wc;
  let top = 2u * row * p.wc + (i - row * p.wc);
  let s = fine_in[top] + fine_in[top + p.wc];
  coarse_out[i] = p.scale * (s.x + s.y);
}
