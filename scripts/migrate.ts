// `npm run db:migrate` applies pending migrations; `npm run db:migration -- <name>` writes a new one.
import { applyPendingMigrations, createMigration } from '../src/platform/db/migrations.js';
import { loadConfig } from '../src/config.js';

const [command, name] = process.argv.slice(2);
const { databaseUrl } = loadConfig();
if (command === 'deploy') {
  const applied = await applyPendingMigrations(databaseUrl);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
} else if (command === 'create' && name) {
  const folder = await createMigration(name, databaseUrl);
  console.log(folder ? `created ${folder}` : 'no changes: schema matches the last migration');
} else {
  console.error('usage: migrate.ts deploy | create <name>');
  process.exit(2);
}
process.exit(0);
