// Global memory access for the flash-attention kernels (attention_flash.wgsl) when D is a multiple of 4:
// every row starts on a 16-byte boundary, so the tensors bind as arrays of vec4 and each load or store
// moves one vec4. Rows are indexed globally (bh · L + i); c is a vec4 index below p.dv.

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read> go: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> dvv: array<vec4<f32>>;

fn ld_q(row: u32, c: u32) -> vec4<f32> { return q[row * p.dv + c]; }
fn ld_k(row: u32, c: u32) -> vec4<f32> { return k[row * p.dv + c]; }
fn ld_v(row: u32, c: u32) -> vec4<f32> { return v[row * p.dv + c]; }
fn ld_o(row: u32, c: u32) -> vec4<f32> { return o[row * p.dv + c]; }
fn ld_go(row: u32, c: u32) -> vec4<f32> { return go[row * p.dv + c]; }
fn st_o(row: u32, c: u32, x: vec4<f32>) { o[row * p.dv + c] = x; }
fn st_dq(row: u32, c: u32, x: vec4<f32>) { dq[row * p.dv + c] = x; }
fn st_dk(row: u32, c: u32, x: vec4<f32>) { dk[row * p.dv + c] = x; }
fn st_dv(row: u32, c: u32, x: vec4<f32>) { dvv[row * p.dv + c] = x; }
