// Builds the migrated template database once per run; test files clone it.
import pg from 'pg';
import { applyPendingMigrations } from '../src/platform/db/migrations.js';
import { ADMIN_URL, adminQuery, databaseUrl, templateDatabaseName } from './helpers/database.js';

export default async function setup() {
  const name = templateDatabaseName();
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  await client.end();
  if (exists.rowCount) return;
  const building = `${name}_building`;
  await adminQuery(`DROP DATABASE IF EXISTS "${building}" WITH (FORCE)`);
  await adminQuery(`CREATE DATABASE "${building}"`);
  await applyPendingMigrations(databaseUrl(building));
  // Renamed only when complete, so an interrupted run never leaves a half-migrated template.
  await adminQuery(`ALTER DATABASE "${building}" RENAME TO "${name}"`);
}
