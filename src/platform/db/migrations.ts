// Offline Prisma migrations through Prisma's own WASM schema engine: the native engine cannot be
// downloaded on air-gapped hosts, and the migration folders stay compatible with `prisma migrate deploy`.
import { createRequire } from 'node:module';
import { readFile, readdir, writeFile, mkdir, stat } from 'node:fs/promises';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';

const require = createRequire(import.meta.url);
const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const migrationsDir = join(projectRoot, 'prisma/migrations');
export const schemaPath = join(projectRoot, 'prisma/schema.prisma');
// Each migration folder keeps the datamodel it produced, so the next one is a datamodel-to-datamodel diff
// (introspecting a live database is what does not work in the WASM engine).
const SNAPSHOT_FILE = 'schema.snapshot.prisma';
const NO_FILTER = { externalTables: [], externalEnums: [] };

type Engine = {
  diff(p: unknown): Promise<{ stdout: string | null }>;
  applyMigrations(p: unknown): Promise<{ appliedMigrationNames: string[] }>;
  free(): void;
};

let wasmBindings: Promise<{ SchemaEngine: { new: (o: unknown, cb: unknown, a: unknown) => Promise<Engine> } }> | undefined;

function loadWasm() {
  wasmBindings ??= (async () => {
    const bgPath = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
    const pkgDir = dirname(bgPath);
    const bg = await import(pathToFileURL(bgPath).href);
    const bytes = await readFile(join(pkgDir, 'schema_engine_bg.wasm'));
    const { instance } = await WebAssembly.instantiate(bytes, { './schema_engine_bg.js': bg });
    bg.__wbg_set_wasm(instance.exports);
    (instance.exports as { __wbindgen_start: () => void }).__wbindgen_start();
    return bg;
  })();
  return wasmBindings;
}

async function withEngine<T>(connectionString: string, fn: (engine: Engine) => Promise<T>): Promise<T> {
  const { SchemaEngine } = await loadWasm();
  // Our own pool, so it can be closed when the engine is done (the engine never closes it).
  const pool = new pg.Pool({ connectionString, max: 2, connectionTimeoutMillis: 10_000 });
  const adapter = bindMigrationAwareSqlAdapterFactory(new PrismaPg(pool));
  const engine = await SchemaEngine.new({ datamodels: undefined }, () => {}, adapter);
  try {
    return await fn(engine);
  } finally {
    engine.free();
    await pool.end();
  }
}

async function listMigrationFolders(): Promise<string[]> {
  try {
    const entries = await readdir(migrationsDir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
}

async function migrationList() {
  const folders = await listMigrationFolders();
  const migrationDirectories = await Promise.all(
    folders.map(async (path) => {
      const file = join(migrationsDir, path, 'migration.sql');
      const content = await readFile(file, 'utf8').then(
        (value) => ({ tag: 'ok' as const, value }),
        (err: Error) => ({ tag: 'error' as const, value: err.message }),
      );
      return { path, migrationFile: { path: 'migration.sql', content } };
    }),
  );
  const lockPath = join(migrationsDir, 'migration_lock.toml');
  const lockContent = await readFile(lockPath, 'utf8').catch(() => null);
  return {
    baseDir: migrationsDir,
    lockfile: { path: 'migration_lock.toml', content: lockContent },
    shadowDbInitScript: '',
    migrationDirectories,
  };
}

/** Applies every pending migration folder; safe to run concurrently-started processes one after another. */
export async function applyPendingMigrations(connectionString: string): Promise<string[]> {
  const migrationsList = await migrationList();
  return withEngine(connectionString, async (engine) => {
    const out = await engine.applyMigrations({ migrationsList, filters: NO_FILTER });
    return out.appliedMigrationNames;
  });
}

/** Writes a new migration folder with the SQL that takes the last snapshot to the current schema. */
export async function createMigration(name: string, connectionString: string): Promise<string | null> {
  if (!/^[a-z0-9_]{1,60}$/.test(name)) throw new Error('migration name must match [a-z0-9_]{1,60}');
  const current = await readFile(schemaPath, 'utf8');
  const folders = await listMigrationFolders();
  const last = folders.at(-1);
  const previous = last ? await readFile(join(migrationsDir, last, SNAPSHOT_FILE), 'utf8') : null;
  const from = previous
    ? { tag: 'schemaDatamodel', files: [{ path: 'previous.prisma', content: previous }] }
    : { tag: 'empty' };
  const to = { tag: 'schemaDatamodel', files: [{ path: 'schema.prisma', content: current }] };
  const sql = await withEngine(connectionString, async (engine) => {
    const result = await engine.diff({ from, to, script: true, exitCode: null, filters: NO_FILTER });
    return result.stdout ?? '';
  });
  if (!sql.trim() || /^-- This is an empty migration/m.test(sql)) return null;
  const stamp = new Date().toISOString().replace(/[-:TZ.]/g, '').slice(0, 14);
  const folder = join(migrationsDir, `${stamp}_${name}`);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'migration.sql'), sql);
  await writeFile(join(folder, SNAPSHOT_FILE), current);
  const lock = join(migrationsDir, 'migration_lock.toml');
  if (!(await stat(lock).catch(() => null))) {
    await writeFile(lock, '# Please do not edit this file manually\nprovider = "postgresql"\n');
  }
  return folder;
}
