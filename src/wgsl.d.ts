// WGSL sources are imported as text: esbuild's text loader for the package, a vite plugin in tests.
declare module '*.wgsl' {
  const source: string;
  export default source;
}
// wgsl_reflect's package "main" is CommonJS under "type": "module"; its ESM build is imported by path.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
