// An async generator suspended in `await live.next()` only sees return() once that next() settles: on
// a quiet stream, never, so a closed subscription would keep its bus listener forever. This wrapper
// ends the live stream first, which settles the pending next() and lets the generator finish at once.
export function releasingWith<T>(generator: AsyncGenerator<T>, live: AsyncIterator<unknown>): AsyncIterableIterator<T> {
  const iterator: AsyncIterableIterator<T> = {
    next: () => generator.next(),
    return: async () => {
      await live.return?.();
      return generator.return(undefined);
    },
    throw: async (error?: unknown) => {
      await live.return?.();
      return generator.throw(error);
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}
