// The one id rule: workplan, check, stage, runner, execution and registration ids. 1-256 bytes of UTF-8, no
// whitespace, no control, format, private-use or unassigned characters (\p{C}), and no U+FFFD: protobuf decoding
// turns invalid UTF-8 into U+FFFD, so two different byte strings would otherwise address the same node.
export const MAX_ID_BYTES = 256;

/** Characters an id may hold, 1-256 of them (isValidId also bounds the UTF-8 bytes). */
export const ID_PATTERN = /^[^\s\p{C}\uFFFD]{1,256}$/u;

/** What isValidId checks, as an error message tail. */
export const ID_RULE = `must be 1-${MAX_ID_BYTES} bytes of UTF-8 without spaces, control characters or U+FFFD`;

export const isValidId = (s: string): boolean => ID_PATTERN.test(s) && Buffer.byteLength(s, 'utf8') <= MAX_ID_BYTES;
