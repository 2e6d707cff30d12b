/**
 * modules-store: the module registry. Package format (manifest, weights, card), validation, archives,
 * content-addressed blob store, SQLite catalog, and the `Registry` facade used by the server, engine and trainer.
 * The PostgreSQL catalog (catalog-pg.ts) and S3 blob store (blob-store-s3.ts) are imported by path (or through
 * `openStore`), so that the embedded default never loads `pg` or the AWS SDK.
 * Example: `const reg = await openRegistry({ dataDir }); const m = await reg.resolve('task/topic');`
 */
export * from './errors';
export * from './manifest';
export * from './validate';
export * from './archive';
export * from './card';
export * from './blob-store';
export * from './catalog';
export { SqliteCatalog, SCHEMA_VERSION } from './catalog-sqlite';
export * from './package';
export * from './registry';
export * from './open-store';
export type { Tensor, DType, TensorData } from './safetensors';
export { parseSafetensors, parseSafetensorsHeader, serializeSafetensors, f32 } from './safetensors';
