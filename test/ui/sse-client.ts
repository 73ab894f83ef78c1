// A minimal Server-Sent Events reader over fetch, for tests and benchmarks (what an EventSource does, minus reconnects).
export interface SseEvent {
  readonly event: string;
  readonly id: string | undefined;
  readonly data: string;
}

export interface SseStream {
  readonly status: number;
  /** The next event, waiting at most timeoutMs; undefined when the stream ended. */
  next(timeoutMs?: number): Promise<SseEvent | undefined>;
  close(): void;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let ended = false;
  /** A read still in flight after a timeout: the next call takes its chunk. */
  let pending: ReturnType<typeof reader.read> | undefined;
  const parse = (): SseEvent | undefined | null => {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end < 0) return null;
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      let id: string | undefined;
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'id') id = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) return { event, id, data: data.join('\n') };
    }
  };
  return {
    status: res.status,
    async next(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = parse();
        if (got) return got;
        if (ended) return undefined;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no SSE event within ${timeoutMs} ms`);
        let timer: NodeJS.Timeout | undefined;
        pending ??= reader.read();
        const chunk = await Promise.race([
          pending,
          new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), left))),
        ]);
        clearTimeout(timer);
        if (chunk === 'timeout') throw new Error(`no SSE event within ${timeoutMs} ms`);
        pending = undefined;
        if (chunk.done) ended = true;
        else buffer += decoder.decode(chunk.value, { stream: true });
      }
    },
    close: () => abort.abort(),
  };
}
