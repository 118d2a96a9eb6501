// A minimal deterministic tar (ustar + PAX for long names) writer: no timestamps, owners or
// ordering from the machine leak into the bytes, so identical inputs give identical layer digests.
import { createReadStream } from 'node:fs';

export const BLOCK = 512;
/** Nix normalises store timestamps to 1; keeping it avoids stale-bytecode checks (e.g. Python .pyc). */
export const FIXED_MTIME = 1;

interface EntryBase {
  /** Path inside the archive, relative, without a leading slash; directories without a trailing one. */
  path: string;
  mode: number;
  uid?: number;
  gid?: number;
}
export type TarEntry =
  | (EntryBase & { kind: 'directory' })
  | (EntryBase & { kind: 'symlink'; target: string })
  | (EntryBase & { kind: 'file'; size: number; content: { file: string } | { data: Buffer } });

export type Sink = (chunk: Buffer) => Promise<void>;
/** A file's header fields, for content streamed with `beginFile`. */
export type FileHeader = EntryBase & { size: number };

/** Exact number of bytes `TarWriter` writes for these entries, end-of-archive blocks included. */
export function tarSize(entries: Iterable<TarEntry>): number {
  let total = 2 * BLOCK;
  for (const entry of entries) total += headerBytes(entry).length + padded(entry.kind === 'file' ? entry.size : 0);
  return total;
}

export class TarWriter {
  private openFile: { remaining: number; size: number } | undefined;

  constructor(private readonly sink: Sink) {}

  async add(entry: TarEntry): Promise<void> {
    if (entry.kind !== 'file') return this.sink(headerBytes(entry));
    const write = await this.beginFile(entry);
    if ('data' in entry.content) await write(entry.content.data);
    else for await (const chunk of createReadStream(entry.content.file)) await write(chunk as Buffer);
    await this.endFile();
  }

  /** Starts a file whose content the caller streams through the returned function, then `endFile`. */
  async beginFile(entry: FileHeader): Promise<Sink> {
    await this.sink(headerBytes({ ...entry, kind: 'file', content: { data: Buffer.alloc(0) } }));
    const open = { remaining: entry.size, size: entry.size };
    this.openFile = open;
    return async (chunk) => {
      open.remaining -= chunk.length;
      if (open.remaining < 0) throw new Error(`${entry.path} is larger than its declared ${entry.size} bytes`);
      await this.sink(chunk);
    };
  }

  async endFile(): Promise<void> {
    const open = this.openFile;
    if (!open) throw new Error('no file is open');
    if (open.remaining !== 0) throw new Error(`file ended ${open.remaining} bytes short of its declared size`);
    this.openFile = undefined;
    const padding = padded(open.size) - open.size;
    if (padding > 0) await this.sink(Buffer.alloc(padding));
  }

  async finish(): Promise<void> {
    await this.sink(Buffer.alloc(2 * BLOCK));
  }
}

function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

const TYPE_FLAG = { file: '0', symlink: '2', directory: '5' } as const;

/** The header block(s) of an entry: a PAX header first when a name does not fit ustar's fields. */
function headerBytes(entry: TarEntry): Buffer {
  const name = entry.kind === 'directory' ? `${entry.path}/` : entry.path;
  const linkName = entry.kind === 'symlink' ? entry.target : '';
  const pax: Record<string, string> = {};
  if (!fitsField(name, 100)) pax.path = name;
  if (!fitsField(linkName, 100)) pax.linkpath = linkName;
  const main = ustarHeader({
    name: pax.path ? truncateAscii(name, 100) : name,
    linkName: pax.linkpath ? truncateAscii(linkName, 100) : linkName,
    mode: entry.mode,
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    size: entry.kind === 'file' ? entry.size : 0,
    typeFlag: TYPE_FLAG[entry.kind],
  });
  if (Object.keys(pax).length === 0) return main;
  const records = Buffer.from(Object.entries(pax).map(([key, value]) => paxRecord(key, value)).join(''), 'utf8');
  const paxHeader = ustarHeader({
    name: truncateAscii(`PaxHeaders/${name}`, 100),
    linkName: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: records.length,
    typeFlag: 'x',
  });
  return Buffer.concat([paxHeader, records, Buffer.alloc(padded(records.length) - records.length), main]);
}

function fitsField(value: string, length: number): boolean {
  return Buffer.byteLength(value, 'utf8') <= length && /^[\x20-\x7e]*$/.test(value);
}

function truncateAscii(value: string, length: number): string {
  return value.replace(/[^\x20-\x7e]/g, '_').slice(0, length);
}

/** "<length> <key>=<value>\n", where length counts the whole record including its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body, 'utf8');
  let length = bodyLength + String(bodyLength).length;
  if (String(length).length !== String(bodyLength).length) length = bodyLength + String(length).length;
  return `${length}${body}`;
}

interface UstarFields {
  name: string;
  linkName: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  typeFlag: string;
}

function ustarHeader(fields: UstarFields): Buffer {
  const header = Buffer.alloc(BLOCK);
  header.write(fields.name, 0, 100, 'utf8');
  writeOctal(header, fields.mode & 0o7777, 100, 8);
  writeOctal(header, fields.uid, 108, 8);
  writeOctal(header, fields.gid, 116, 8);
  writeOctal(header, fields.size, 124, 12);
  writeOctal(header, FIXED_MTIME, 136, 12);
  header.fill(0x20, 148, 156); // The checksum is computed with its own field as spaces.
  header.write(fields.typeFlag, 156, 1, 'ascii');
  header.write(fields.linkName, 157, 100, 'utf8');
  header.write('ustar\u000000', 257, 8, 'ascii');
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return header;
}

function writeOctal(header: Buffer, value: number, offset: number, length: number): void {
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new Error(`value ${value} does not fit a ${length}-byte tar field`);
  header.write(`${digits.padStart(length - 1, '0')}\u0000`, offset, length, 'ascii');
}
