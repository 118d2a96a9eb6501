// Docker multiplexes stdout and stderr of non-TTY containers into one byte stream: each frame is an 8-byte
// header (stream type, three zero bytes, big-endian payload length) followed by the payload.

export type FrameStream = 'stdin' | 'stdout' | 'stderr';
export type DockerFrame = { stream: FrameStream; payload: Buffer };

const HEADER_BYTES = 8;
const STREAM_BY_TYPE: Record<number, FrameStream> = { 0: 'stdin', 1: 'stdout', 2: 'stderr' };

export async function* readDockerFrames(source: AsyncIterable<Buffer | string> | Iterable<Buffer>): AsyncGenerator<DockerFrame> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of source) {
    pending = pending.length === 0 ? toBuffer(chunk) : Buffer.concat([pending, toBuffer(chunk)]);
    let offset = 0;
    while (pending.length - offset >= HEADER_BYTES) {
      const size = pending.readUInt32BE(offset + 4);
      const end = offset + HEADER_BYTES + size;
      if (pending.length < end) break;
      const stream = STREAM_BY_TYPE[pending[offset]] ?? 'stdout';
      yield { stream, payload: pending.subarray(offset + HEADER_BYTES, end) };
      offset = end;
    }
    pending = pending.subarray(offset);
  }
}

/** Splits a whole multiplexed buffer (a finished container's logs) into its stdout and stderr text. */
export async function demultiplexBuffer(buffer: Buffer): Promise<{ stdout: string; stderr: string }> {
  const parts: Record<FrameStream, Buffer[]> = { stdin: [], stdout: [], stderr: [] };
  for await (const frame of readDockerFrames([buffer])) parts[frame.stream].push(frame.payload);
  return { stdout: Buffer.concat(parts.stdout).toString('utf8'), stderr: Buffer.concat(parts.stderr).toString('utf8') };
}

function toBuffer(chunk: Buffer | string): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}
