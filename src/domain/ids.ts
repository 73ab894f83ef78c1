// The one id rule: workplan, check, stage, runner, execution and registration ids. 1-256 characters (semantics.md),
// so at most 1 KiB of UTF-8; no whitespace, no control, format, private-use or unassigned characters (\p{C}), and
// no U+FFFD: protobuf decoding turns invalid UTF-8 into U+FFFD, so two different byte strings would otherwise
// address the same node.
export const ID_PATTERN = /^[^\s\p{C}\uFFFD]{1,256}$/u;

/** An id's UTF-8 size can never pass this: 256 characters of at most 4 bytes. */
export const MAX_ID_BYTES = 1024;

/** What isValidId checks, as an error message tail. */
export const ID_RULE = 'must be 1-256 printable characters without spaces (and no U+FFFD: ids must be valid UTF-8)';

export const isValidId = (s: string): boolean => ID_PATTERN.test(s);
