// CONVOY_AGENT_LABELS: `key=value,key=value`, checked with the rules the API applies to worker labels.
import { labelList } from '../../src/modules/workers/validation.js';

export type ParsedLabels = { ok: true; labels: Record<string, string> } | { ok: false; problems: string[] };

export function parseLabels(text: string): ParsedLabels {
  const labels: Record<string, string> = {};
  const problems: string[] = [];
  for (const entry of text.split(',').map((part) => part.trim()).filter(Boolean)) {
    const equals = entry.indexOf('=');
    const key = equals > 0 ? entry.slice(0, equals).trim() : '';
    if (!key) {
      problems.push(`"${entry}" is not key=value`);
      continue;
    }
    if (key in labels) problems.push(`"${key}" is given twice`);
    labels[key] = entry.slice(equals + 1).trim();
  }
  return problems.length ? { ok: false, problems } : { ok: true, labels };
}

/** Problems the API would report for these labels, as `key: message` lines. */
export function checkLabels(labels: Record<string, string>): string[] {
  const entries = Object.entries(labels).map(([key, value]) => ({ key, value }));
  const result = labelList.safeParse(entries);
  if (result.success) return [];
  return result.error.issues.map((issue) => {
    const [index, field] = issue.path;
    const entry = typeof index === 'number' ? entries[index] : undefined;
    return entry ? `label ${entry.key}${field ? ` (${String(field)})` : ''}: ${issue.message}` : `labels: ${issue.message}`;
  });
}
